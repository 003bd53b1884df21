/** Patch helpers: the content types client-node needs per call, and the body of a status patch. */
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';

/** Per-call options of a JSON merge patch (RFC 7386). */
export const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
/** Per-call options of a server-side apply (with `fieldManager` and `force` in the request). */
export const serverSideApply = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);

/** The body of a merge patch of the `status` subresource: only `status` is sent. */
export function statusPatch<T>(status: T): { status: T } {
  return { status };
}

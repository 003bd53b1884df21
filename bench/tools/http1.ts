/** The little of HTTP/1.1 the fixed-rate client needs: keep-alive GETs answered with Content-Length. */
export interface ResponseHead {
  status: number;
  /** Bytes of the status line and headers, including the blank line. */
  headBytes: number;
  contentLength: number;
}

export class HttpParseError extends Error {}

const HEAD_END = Buffer.from('\r\n\r\n');

/** The head of the response at the start of `data`, or undefined while it is incomplete. */
export function parseResponseHead(data: Buffer): ResponseHead | undefined {
  const end = data.indexOf(HEAD_END);
  if (end < 0) {
    if (data.length > 64 * 1024) throw new HttpParseError('response head longer than 64 KiB');
    return undefined;
  }
  const head = data.subarray(0, end).toString('latin1');
  const statusLine = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  if (!statusLine) throw new HttpParseError(`not an HTTP/1.x status line: ${JSON.stringify(head.slice(0, 40))}`);
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) throw new HttpParseError('chunked responses are not supported; the bench server sends Content-Length');
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  return { status: Number(statusLine[1]), headBytes: end + HEAD_END.length, contentLength: length ? Number(length[1]) : 0 };
}

export function getRequest(host: string, path: string): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: ambit-bench\r\n\r\n`, 'latin1');
}

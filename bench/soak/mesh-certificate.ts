// A mesh certificate for any identity, signed with the lab's self-signed mesh CA (`istio-ca-secret`):
// what a client that got hold of its own certificate presents (the soak, and the data-plane security test).
import { issueLeaf, loadCa, type KeyPairPem } from '../../src/util/pki.js';
import { kubectl } from '../lab-kube.js';

export interface MeshCertificate extends KeyPairPem {
  /** The mesh CA's certificate, which ztunnels trust. */
  caPem: string;
}

export async function mintMeshCertificate(context: string, identity: string): Promise<MeshCertificate> {
  const secret = JSON.parse(await kubectl(context, ['get', 'secret', '-n', 'istio-system', 'istio-ca-secret', '-o', 'json'])) as { data: Record<string, string> };
  const decode = (key: string) => {
    const value = secret.data[key];
    if (!value) throw new Error(`istio-ca-secret has no ${key}`);
    return Buffer.from(value, 'base64').toString();
  };
  const meshCa = await loadCa(decode('ca-cert.pem'), decode('ca-key.pem'));
  const leaf = await issueLeaf(meshCa, { commonName: '', uris: [identity], client: true, server: true, lifetimeMs: 3_600_000 });
  return { ...leaf, caPem: meshCa.certPem };
}

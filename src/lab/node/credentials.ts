// A real node's credentials from its cluster's CA: kubelet's client (system:node:<name>) and serving certificates, its kubeconfig.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { issueLeaf, loadCa } from '../../util/pki.js';
import type { ClusterFiles } from '../controlplane.js';
import { writeFileAtomic } from '../state.js';

export interface NodeCredentials {
  kubeconfig: string;
  servingCertFile: string;
  servingKeyFile: string;
  caCertFile: string;
}

/** Writes the files into `dir` (the node's state directory is a good place: they go with it). */
export async function issueNodeCredentials(cluster: { apiServerUrl: string; files: ClusterFiles }, node: { name: string; ip: string }, dir: string): Promise<NodeCredentials> {
  const ca = await loadCa(readFileSync(cluster.files.caCert, 'utf8'), readFileSync(join(cluster.files.pki, 'ca.key'), 'utf8'));
  // The Node authorizer and NodeRestriction know a kubelet by this name and group.
  const client = await issueLeaf(ca, { commonName: `system:node:${node.name}`, organizations: ['system:nodes'], client: true });
  const serving = await issueLeaf(ca, { commonName: node.name, server: true, dnsNames: [node.name], ipAddresses: [node.ip] });
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const kubeconfig = join(dir, 'kubelet.kubeconfig');
  writeFileAtomic(
    kubeconfig,
    toYaml({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'lab', cluster: { server: cluster.apiServerUrl, 'certificate-authority-data': b64(ca.certPem) } }],
      users: [{ name: node.name, user: { 'client-certificate-data': b64(client.certPem), 'client-key-data': b64(client.keyPem) } }],
      contexts: [{ name: 'kubelet', context: { cluster: 'lab', user: node.name } }],
      'current-context': 'kubelet',
    }),
    0o600,
  );
  const servingCertFile = join(dir, 'kubelet-serving.crt');
  const servingKeyFile = join(dir, 'kubelet-serving.key');
  writeFileAtomic(servingCertFile, serving.certPem);
  writeFileAtomic(servingKeyFile, serving.keyPem, 0o600);
  return { kubeconfig, servingCertFile, servingKeyFile, caCertFile: cluster.files.caCert };
}

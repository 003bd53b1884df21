import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { createRootCa, exportPublicKeyPem, generateKeys, exportKeyPem, issueLeaf, loadCa } from '../util/pki.js';
import { CLUSTER_DOMAIN, type ClusterPlan } from './plan.js';
import { findEtcd, findK8sBinDir } from './k8s-binaries.js';
import { isAlive, spawnInNetns } from './processes.js';
import { clusterDir, writeFileAtomic, type LabProcess } from './state.js';

export interface ClusterFiles {
  dir: string;
  pki: string;
  caCert: string;
  adminKubeconfig: string;
  agentKubeconfig: string;
  logs: string;
}

export function clusterFiles(cluster: string, root?: string): ClusterFiles {
  const dir = clusterDir(cluster, root);
  const pki = join(dir, 'pki');
  return {
    dir,
    pki,
    caCert: join(pki, 'ca.crt'),
    adminKubeconfig: join(dir, 'admin.kubeconfig'),
    agentKubeconfig: join(dir, 'agent.kubeconfig'),
    logs: join(dir, 'logs'),
  };
}

function kubeconfig(name: string, server: string, caPem: string, certPem: string, keyPem: string): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server, 'certificate-authority-data': b64(caPem) } }],
    users: [{ name, user: { 'client-certificate-data': b64(certPem), 'client-key-data': b64(keyPem) } }],
    contexts: [{ name, context: { cluster: name, user: name } }],
    'current-context': name,
  });
}

/** Creates the cluster's CA, serving and client certificates and kubeconfigs, once. */
export async function ensureClusterPki(cluster: ClusterPlan, root?: string): Promise<ClusterFiles> {
  const files = clusterFiles(cluster.name, root);
  mkdirSync(files.pki, { recursive: true, mode: 0o700 });
  const caKeyFile = join(files.pki, 'ca.key');
  const ca = existsSync(caKeyFile)
    ? await loadCa(readFileSync(files.caCert, 'utf8'), readFileSync(caKeyFile, 'utf8'))
    : await createRootCa(`ambit-lab-${cluster.name}-ca`);
  if (!existsSync(caKeyFile)) {
    writeFileAtomic(files.caCert, ca.certPem);
    writeFileAtomic(caKeyFile, ca.keyPem, 0o600);
  }
  const leaf = async (file: string, options: Parameters<typeof issueLeaf>[1]) => {
    if (existsSync(join(files.pki, `${file}.key`))) {
      return { certPem: readFileSync(join(files.pki, `${file}.crt`), 'utf8'), keyPem: readFileSync(join(files.pki, `${file}.key`), 'utf8') };
    }
    const pair = await issueLeaf(ca, options);
    writeFileAtomic(join(files.pki, `${file}.crt`), pair.certPem);
    writeFileAtomic(join(files.pki, `${file}.key`), pair.keyPem, 0o600);
    return pair;
  };
  await leaf('apiserver', {
    commonName: 'kube-apiserver',
    server: true,
    dnsNames: ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', `kubernetes.default.svc.${CLUSTER_DOMAIN}`, 'localhost'],
    ipAddresses: [cluster.cpIp, cluster.kubernetesServiceIp, '127.0.0.1'],
  });
  if (!existsSync(join(files.pki, 'sa.key'))) {
    const keys = await generateKeys();
    writeFileAtomic(join(files.pki, 'sa.key'), await exportKeyPem(keys.privateKey), 0o600);
    writeFileAtomic(join(files.pki, 'sa.pub'), await exportPublicKeyPem(keys.publicKey));
  }
  const clients: Array<[string, string, string[]]> = [
    ['admin', 'kubernetes-admin', ['system:masters']],
    ['controller-manager', 'system:kube-controller-manager', []],
    ['scheduler', 'system:kube-scheduler', []],
    // The node agent plays kubelet, kube-proxy, CoreDNS and the LoadBalancer controller at once.
    ['agent', 'ambit-lab-agent', ['system:masters']],
  ];
  // kube-apiserver's client certificate towards kubelets (exec, logs, port-forward, attach).
  await leaf('apiserver-kubelet-client', { commonName: 'kube-apiserver-kubelet-client', organizations: ['system:masters'], client: true });
  for (const [file, cn, groups] of clients) {
    const pair = await leaf(file, { commonName: cn, organizations: groups, client: true });
    const path = join(files.dir, `${file}.kubeconfig`);
    if (!existsSync(path)) {
      writeFileAtomic(path, kubeconfig(`lab-${cluster.name}`, cluster.apiServerUrl, ca.certPem, pair.certPem, pair.keyPem), 0o600);
    }
  }
  return files;
}

interface Component {
  name: string;
  argv: string[];
}

function components(cluster: ClusterPlan, files: ClusterFiles): Component[] {
  const bin = findK8sBinDir();
  const pki = (f: string) => join(files.pki, f);
  return [
    {
      name: 'etcd',
      argv: [
        findEtcd(),
        `--name=${cluster.name}`,
        `--data-dir=${join(files.dir, 'etcd')}`,
        '--listen-client-urls=http://127.0.0.1:2379',
        '--advertise-client-urls=http://127.0.0.1:2379',
        '--listen-peer-urls=http://127.0.0.1:2380',
        '--initial-advertise-peer-urls=http://127.0.0.1:2380',
        `--initial-cluster=${cluster.name}=http://127.0.0.1:2380`,
        '--listen-metrics-urls=',
        '--log-level=warn',
        '--logger=zap',
      ],
    },
    {
      name: 'kube-apiserver',
      argv: [
        join(bin, 'kube-apiserver'),
        '--etcd-servers=http://127.0.0.1:2379',
        `--bind-address=${cluster.cpIp}`,
        `--advertise-address=${cluster.cpIp}`,
        '--secure-port=6443',
        '--insecure-port=0',
        `--tls-cert-file=${pki('apiserver.crt')}`,
        `--tls-private-key-file=${pki('apiserver.key')}`,
        `--client-ca-file=${pki('ca.crt')}`,
        `--service-account-key-file=${pki('sa.pub')}`,
        `--service-account-signing-key-file=${pki('sa.key')}`,
        `--service-account-issuer=https://kubernetes.default.svc.${CLUSTER_DOMAIN}`,
        // Only the API server itself: a token without an audience (legacy, Secret-based) must not be valid for istio-ca.
        `--api-audiences=https://kubernetes.default.svc.${CLUSTER_DOMAIN}`,
        `--service-cluster-ip-range=${cluster.serviceCidr}`,
        '--service-node-port-range=30000-32767',
        // Node: a real kubelet (system:node:<name>) may read what its own pods need, as on any cluster.
        '--authorization-mode=Node,RBAC',
        '--allow-privileged=true',
        '--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,ResourceQuota,DefaultTolerationSeconds,NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook',
        // Towards kubelets: a client certificate (kubelet authenticates it against the cluster CA), the
        // kubelet's serving certificate checked against the same CA, and the node's InternalIP (its
        // name does not resolve).
        `--kubelet-client-certificate=${pki('apiserver-kubelet-client.crt')}`,
        `--kubelet-client-key=${pki('apiserver-kubelet-client.key')}`,
        `--kubelet-certificate-authority=${pki('ca.crt')}`,
        '--kubelet-preferred-address-types=InternalIP',
        '--profiling=false',
        '--event-ttl=30m',
        '--v=1',
      ],
    },
    {
      name: 'kube-controller-manager',
      argv: [
        join(bin, 'kube-controller-manager'),
        `--kubeconfig=${join(files.dir, 'controller-manager.kubeconfig')}`,
        `--authentication-kubeconfig=${join(files.dir, 'controller-manager.kubeconfig')}`,
        `--authorization-kubeconfig=${join(files.dir, 'controller-manager.kubeconfig')}`,
        `--service-account-private-key-file=${pki('sa.key')}`,
        `--root-ca-file=${pki('ca.crt')}`,
        `--cluster-signing-cert-file=${pki('ca.crt')}`,
        `--cluster-signing-key-file=${pki('ca.key')}`,
        '--use-service-account-credentials=true',
        '--controllers=*,bootstrapsigner,tokencleaner,-cloud-node-lifecycle,-service,-route,-nodeipam',
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        '--secure-port=10257',
        '--port=0',
        '--profiling=false',
        '--v=1',
      ],
    },
    {
      name: 'kube-scheduler',
      argv: [
        join(bin, 'kube-scheduler'),
        `--kubeconfig=${join(files.dir, 'scheduler.kubeconfig')}`,
        `--authentication-kubeconfig=${join(files.dir, 'scheduler.kubeconfig')}`,
        `--authorization-kubeconfig=${join(files.dir, 'scheduler.kubeconfig')}`,
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        '--secure-port=10259',
        '--port=0',
        '--profiling=false',
        '--v=1',
      ],
    },
  ];
}

/**
 * Starts whichever control-plane components of a stage are not running. The controllers start
 * after the API server answers: they exit if RBAC bootstrap has not happened yet.
 */
export function startControlPlane(cluster: ClusterPlan, files: ClusterFiles, running: LabProcess[], stage: 'api' | 'controllers'): LabProcess[] {
  const started: LabProcess[] = [];
  const wanted = stage === 'api' ? ['etcd', 'kube-apiserver'] : ['kube-controller-manager', 'kube-scheduler'];
  for (const component of components(cluster, files).filter((c) => wanted.includes(c.name))) {
    const name = `${cluster.name}/${component.name}`;
    const current = running.find((p) => p.name === name);
    if (current && isAlive(current.pid)) continue;
    const pid = spawnInNetns(cluster.cpNetns, component.argv, join(files.logs, `${component.name}.log`));
    started.push({ name, pid, netns: cluster.cpNetns });
  }
  return started;
}

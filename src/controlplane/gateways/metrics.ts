import { Counter, type Registry } from 'prom-client';

export interface GatewayControllerMetrics {
  /** Reconciles of one Gateway, by result (`ok`, `error`). */
  reconciles: Counter<'result'>;
  /** Writes to the API server, by object kind and operation (`apply`, `delete`, `status`, `create`). */
  writes: Counter<'kind' | 'operation'>;
}

function counter<T extends string>(registry: Registry, name: string, help: string, labelNames: T[]): Counter<T> {
  // One registry may see several controllers over a process's life (tests); prom-client refuses duplicate names.
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<T>;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

export function createGatewayControllerMetrics(registry: Registry): GatewayControllerMetrics {
  return {
    reconciles: counter(registry, 'ambit_gateway_controller_reconciles_total', 'Reconciles of east-west Gateways, by result.', ['result']),
    writes: counter(registry, 'ambit_gateway_controller_writes_total', 'API writes of the east-west gateway controller, by kind and operation.', ['kind', 'operation']),
  };
}

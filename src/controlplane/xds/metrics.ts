import { Counter, Gauge, type Registry } from 'prom-client';

export interface XdsMetrics {
  connected: Gauge;
  pushes: Counter<'type'>;
  pushedResources: Counter<'type'>;
  acks: Counter<'type'>;
  nacks: Counter<'type'>;
  refused: Counter<'reason'>;
  ignored: Counter<'reason'>;
  refusedNames: Counter<'type' | 'reason'>;
}

export function createXdsMetrics(registry: Registry): XdsMetrics {
  const registers = [registry];
  return {
    connected: new Gauge({ name: 'ambit_xds_connected_clients', help: 'Open delta xDS streams', registers }),
    pushes: new Counter({ name: 'ambit_xds_pushes_total', help: 'Delta xDS responses sent', labelNames: ['type'], registers }),
    pushedResources: new Counter({ name: 'ambit_xds_pushed_resources_total', help: 'Resources (upserts plus removals) sent', labelNames: ['type'], registers }),
    acks: new Counter({ name: 'ambit_xds_acks_total', help: 'Responses acknowledged by clients', labelNames: ['type'], registers }),
    nacks: new Counter({ name: 'ambit_xds_nacks_total', help: 'Responses rejected by clients', labelNames: ['type'], registers }),
    refused: new Counter({ name: 'ambit_xds_refused_streams_total', help: 'Streams refused at authentication, authorization or for a per-peer limit', labelNames: ['reason'], registers }),
    refusedNames: new Counter({ name: 'ambit_xds_refused_resource_names_total', help: 'Resource names a caller subscribed to or held but may not read (reason not_permitted, or revoked when its access went)', labelNames: ['type', 'reason'], registers }),
    ignored: new Counter({ name: 'ambit_xds_ignored_requests_total', help: 'Requests ignored (e.g. for a type URL the server does not serve)', labelNames: ['reason'], registers }),
  };
}

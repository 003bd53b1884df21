/** Row names of the policy case, shared by the case and the report's targets. */

export const POLICY_TARGETS = ['cross node', 'same node'] as const;
export type PolicyTarget = (typeof POLICY_TARGETS)[number];

export const POLICY_MEASURES = {
  refused: 'DENY applied → new connections refused',
  answered: 'DENY removed → new connections answered',
  cut: 'DENY applied → open connection cut',
} as const;
export type PolicyMeasure = keyof typeof POLICY_MEASURES;

export const policyVariant = (target: PolicyTarget, measure: PolicyMeasure) => `${target}: ${POLICY_MEASURES[measure]}`;

/** Which measure a row of the policy case is, from its variant. */
export function policyMeasureOf(variant: string | undefined): PolicyMeasure | undefined {
  return (Object.keys(POLICY_MEASURES) as PolicyMeasure[]).find((m) => variant?.endsWith(`: ${POLICY_MEASURES[m]}`));
}

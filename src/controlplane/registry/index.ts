export { MeshRegistry, type Kind, type RegistryChange, type RegistryOptions, type RegistryStats } from './registry.js';
export { convertAuthorizationPolicy, DRY_RUN_ANNOTATION, type PolicyConversion } from './authorization.js';
export { TRAFFIC_DISTRIBUTION_ANNOTATION } from './service.js';
export type { FieldProblem, Problem } from './problems.js';
export type { ResourceChanges } from './tracked-resources.js';

import type { TwoNetworkLab } from '../multicluster-lab.js';
import type { CaseResult, TwoNetworkCaseId } from '../report/types.js';

export interface TwoNetworkCaseContext {
  quick: boolean;
  lab: TwoNetworkLab;
  workDir: string;
  log: (line: string) => void;
  /** True once the run was interrupted: measure nothing more. */
  stopped: () => boolean;
}

/** A case on two clusters on two networks; it creates what it needs in the lab and removes it again. */
export interface TwoNetworkCase {
  id: TwoNetworkCaseId;
  title: string;
  run(context: TwoNetworkCaseContext): Promise<CaseResult>;
}

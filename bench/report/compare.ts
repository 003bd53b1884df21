import { ratio } from '../stats.js';
import type { CaseResult, CaseRow } from './types.js';

const sameVariant = (a: CaseRow, b: CaseRow) => (a.variant ?? '') === (b.variant ?? '');

function baseline(result: CaseResult, row: CaseRow, path: string): CaseRow | undefined {
  return result.rows.find((r) => r.path === path && sameVariant(r, row) && !r.error);
}

/** Fills in each row's ratios to direct and stunnel, and added values over direct (same variant). */
export function withComparisons(result: CaseResult): CaseResult {
  const rows = result.rows.map((row): CaseRow => {
    if (row.error) return row;
    const out: CaseRow = { ...row };
    const direct = baseline(result, row, 'direct');
    if (result.compare) {
      const key = result.compare;
      out.ratios = { vsDirect: ratio(row.values[key], direct?.values[key]), vsStunnel: ratio(row.values[key], baseline(result, row, 'stunnel')?.values[key]) };
    }
    if (result.addedOver) {
      out.added = Object.fromEntries(
        result.addedOver.map((key) => {
          const mine = row.values[key];
          const theirs = direct?.values[key];
          return [key, mine != null && theirs != null ? mine - theirs : null];
        }),
      );
    }
    return out;
  });
  return { ...result, rows };
}

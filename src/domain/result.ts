// Device results: observations, abnormal flags, and the text a result note shows.

/** Abnormal flags the chart highlights (H high, L low, HH/LL critical, A abnormal); N is normal. */
export const RESULT_FLAGS = ['N', 'H', 'L', 'HH', 'LL', 'A'] as const;
export type ResultFlag = (typeof RESULT_FLAGS)[number];

export const RESULT_KINDS = ['lab', 'screening', 'imaging', 'other'] as const;
export type ResultKind = (typeof RESULT_KINDS)[number];

export interface ResultObservation {
  code: string;
  display?: string;
  value: number | string;
  unit?: string;
  referenceRange?: string;
  flag?: ResultFlag;
}

export const isAbnormalFlag = (flag: ResultFlag | undefined): boolean =>
  flag !== undefined && flag !== 'N';

/** The note text of a result: one line per observation, abnormal ones marked. */
export function renderResult(
  heading: string,
  observations: readonly ResultObservation[],
  correction: number | null = null,
): string {
  const lines = observations.map((o) => {
    const name = o.display ? `${o.display} (${o.code})` : o.code;
    const value = `${o.value}${o.unit ? ` ${o.unit}` : ''}`;
    const range = o.referenceRange ? ` [${o.referenceRange}]` : '';
    const flag = isAbnormalFlag(o.flag) ? ` ${o.flag ?? ''} ⚠` : '';
    return `${name}: ${value}${range}${flag}`;
  });
  const title = correction === null ? heading : `Corrected result (version ${correction})`;
  return [title, ...lines].join('\n');
}

// Device results: observations, abnormal flags, and the text a result note shows.
import { SPECIES, type Species } from './patient.js';

/** Abnormal flags the chart highlights (H high, L low, HH/LL critical, A abnormal); N is normal. */
/** Longest text value of an observation, whichever way the result arrives (JSON, HL7 v2). */
export const MAX_OBSERVATION_TEXT = 10_000;

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

/** How devices and labs name species, to the species we record. */
const SPECIES_WORDS: Record<string, Species> = {
  dog: 'canine',
  canine: 'canine',
  canis: 'canine',
  cat: 'feline',
  feline: 'feline',
  felis: 'feline',
  horse: 'equine',
  equine: 'equine',
  pony: 'equine',
  donkey: 'equine',
  cow: 'bovine',
  cattle: 'bovine',
  bovine: 'bovine',
  sheep: 'ovine',
  ovine: 'ovine',
  goat: 'caprine',
  caprine: 'caprine',
  pig: 'porcine',
  porcine: 'porcine',
  alpaca: 'camelid',
  llama: 'camelid',
  camelid: 'camelid',
  rabbit: 'lagomorph',
  lagomorph: 'lagomorph',
  rodent: 'rodent',
  rat: 'rodent',
  mouse: 'rodent',
  hamster: 'rodent',
  'guinea pig': 'rodent',
  ferret: 'ferret',
  bird: 'avian',
  avian: 'avian',
  parrot: 'avian',
  reptile: 'reptile',
  lizard: 'reptile',
  snake: 'reptile',
  tortoise: 'reptile',
  turtle: 'reptile',
  amphibian: 'amphibian',
  frog: 'amphibian',
  fish: 'fish',
  human: 'human',
};

/** The species a source's word names, or null when we cannot tell (no fallback match then). */
export function speciesOf(text: string | null | undefined): Species | null {
  if (!text) return null;
  const word = text.trim().toLowerCase().replace(/\s+/g, ' ');
  if ((SPECIES as readonly string[]).includes(word)) return word as Species;
  return SPECIES_WORDS[word] ?? SPECIES_WORDS[word.replace(/s$/, '')] ?? null;
}

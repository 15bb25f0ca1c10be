// Patient vocabulary (species, sex, identifier systems) and identifier validation rules.
import { AppError } from './errors.js';

export const SPECIES = [
  'canine',
  'feline',
  'equine',
  'bovine',
  'ovine',
  'caprine',
  'porcine',
  'camelid',
  'lagomorph',
  'rodent',
  'ferret',
  'avian',
  'reptile',
  'amphibian',
  'fish',
  'other',
  'human',
] as const;
export type Species = (typeof SPECIES)[number];

export const SEXES = ['female', 'male', 'female_spayed', 'male_neutered', 'unknown'] as const;
export type Sex = (typeof SEXES)[number];

export const IDENTIFIER_SYSTEMS = [
  'microchip',
  'mrn',
  'tattoo',
  'registration',
  'passport',
  'insurance',
  'rabies_tag',
  'external',
] as const;
export type IdentifierSystem = (typeof IDENTIFIER_SYSTEMS)[number];

export function isIdentifierSystem(value: string): value is IdentifierSystem {
  return (IDENTIFIER_SYSTEMS as readonly string[]).includes(value);
}

export interface Identifier {
  system: IdentifierSystem;
  value: string;
}

/**
 * Normalizes an identifier value and rejects malformed ones. Microchips are ISO 11784/11785
 * (15 digits) or the older 9/10 character FDX-A/AVID codes; spaces and dashes are ignored.
 */
export function normalizeIdentifier(system: IdentifierSystem, raw: string): string {
  const trimmed = raw.trim();
  switch (system) {
    case 'microchip': {
      const compact = trimmed.replace(/[\s-]/g, '').toUpperCase();
      if (/^\d{15}$/.test(compact) || /^[0-9A-F]{9,10}$/.test(compact)) return compact;
      throw new AppError(
        'invalid',
        'A microchip number must be 15 digits (ISO 11784) or a 9 or 10 character FDX-A/AVID code.',
      );
    }
    case 'mrn':
    case 'tattoo':
    case 'registration':
    case 'passport':
    case 'insurance':
    case 'rabies_tag':
    case 'external': {
      if (trimmed.length === 0) throw new AppError('invalid', `The ${system} identifier is empty.`);
      return trimmed;
    }
  }
}

/** The distinct words of a search key, each a place where a word-prefix search may match. */
export function nameWords(key: string): string[] {
  return [...new Set(key.split(' ').filter((w) => w !== ''))];
}

/**
 * The words a one-word patient search matches by prefix: the first word of the patient's name
 * key (a prefix of the name is a prefix of its first word) and every word of its owners' keys.
 */
export function searchWordsOf(patientKey: string, ownerKeys: string[]): string[] {
  const first = nameWords(patientKey).slice(0, 1);
  return [...new Set([...first, ...ownerKeys.flatMap(nameWords)])];
}

/** Lower-cased, accent-free form of a name used for prefix search. */
export function searchKey(name: string): string {
  return name.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase().replace(/\s+/g, ' ').trim();
}

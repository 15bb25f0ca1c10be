// Display helpers: dates, ages, sizes, species.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

export const formatDateTime = (iso: string) => dateTime.format(new Date(iso));
export const formatDate = (iso: string) =>
  dateOnly.format(new Date(iso.length === 10 ? `${iso}T12:00:00` : iso));

/** "3 y 2 m" from a birth date (YYYY-MM-DD), or null. */
export function ageOf(birthDate: string | null, now = new Date()): string | null {
  if (!birthDate) return null;
  const born = new Date(`${birthDate}T12:00:00`);
  let months = (now.getFullYear() - born.getFullYear()) * 12 + (now.getMonth() - born.getMonth());
  if (now.getDate() < born.getDate()) months -= 1;
  if (months < 0) return null;
  if (months < 1)
    return `${Math.max(0, Math.floor((now.getTime() - born.getTime()) / 86_400_000))} d`;
  if (months < 24) return `${months} m`;
  return `${Math.floor(months / 12)} y ${months % 12} m`;
}

export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export { SPECIES, SEXES, IDENTIFIER_SYSTEMS } from '../../src/domain/patient.js';

const SPECIES_LABEL: Record<string, string> = {
  canine: 'Dog',
  feline: 'Cat',
  equine: 'Horse',
  bovine: 'Cattle',
  ovine: 'Sheep',
  caprine: 'Goat',
  porcine: 'Pig',
  avian: 'Bird',
  camelid: 'Camelid',
  lagomorph: 'Rabbit',
  rodent: 'Rodent',
  ferret: 'Ferret',
  reptile: 'Reptile',
  amphibian: 'Amphibian',
  fish: 'Fish',
  other: 'Other',
  human: 'Person',
};
export const speciesLabel = (species: string) => SPECIES_LABEL[species] ?? species;

export const NOTE_KIND_LABEL: Record<string, string> = {
  soap: 'SOAP',
  clinical: 'Clinical',
  behavior: 'Behaviour',
  training: 'Training',
  result: 'Result',
  visit: 'Visit',
};

export const ROLE_LABEL: Record<string, string> = {
  admin: 'Administrator',
  clinician: 'Clinician',
  nurse: 'Nurse',
  reception: 'Reception',
  auditor: 'Auditor',
  owner: 'Owner',
  trainer: 'Trainer',
  walker: 'Walker',
  carer: 'Carer',
};

export const SEX_LABEL: Record<string, string> = {
  female: 'Female',
  male: 'Male',
  female_spayed: 'Female (spayed)',
  male_neutered: 'Male (neutered)',
  unknown: 'Unknown',
};

export const IDENTIFIER_LABEL: Record<string, string> = {
  microchip: 'Microchip',
  mrn: 'MRN',
  tattoo: 'Tattoo',
  registration: 'Registration',
  passport: 'Passport',
  insurance: 'Insurance',
  rabies_tag: 'Rabies tag',
  external: 'External id',
};

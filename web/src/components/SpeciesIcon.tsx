// A species as an icon with a text label for screen readers.
import { ThemeIcon } from '@mantine/core';
import {
  IconCat,
  IconDog,
  IconFeather,
  IconFish,
  IconHorse,
  IconPaw,
  IconUser,
} from '@tabler/icons-react';
import { speciesLabel } from '../format';

const ICONS: Record<string, typeof IconPaw> = {
  canine: IconDog,
  feline: IconCat,
  equine: IconHorse,
  avian: IconFeather,
  fish: IconFish,
  human: IconUser,
};

export function SpeciesIcon({ species, size = 'lg' }: { species: string; size?: string }) {
  const Icon = ICONS[species] ?? IconPaw;
  return (
    <ThemeIcon size={size} variant="light" radius="xl" title={speciesLabel(species)}>
      <Icon aria-label={speciesLabel(species)} role="img" style={{ width: '70%', height: '70%' }} />
    </ThemeIcon>
  );
}

// A patient in a list: species icon, name, breed, age and first owner; opens the chart.
import { Card, Group, Text } from '@mantine/core';
import { Link } from 'react-router';
import { ageOf, speciesLabel } from '../format';
import type { Patient } from '../types';
import { SpeciesIcon } from './SpeciesIcon';

export function PatientCard({ patient }: { patient: Patient }) {
  const age = ageOf(patient.birthDate);
  return (
    <Card withBorder component={Link} to={`/patients/${patient.id}`} padding="sm">
      <Group wrap="nowrap">
        <SpeciesIcon species={patient.species} />
        <div style={{ minWidth: 0 }}>
          <Text fw={600} truncate>
            {patient.name}
          </Text>
          <Text size="sm" c="dimmed" truncate>
            {[speciesLabel(patient.species), patient.breed, age].filter(Boolean).join(' · ')}
          </Text>
          {patient.owners[0] && (
            <Text size="xs" c="dimmed" truncate>
              Owner: {patient.owners[0].name}
            </Text>
          )}
        </div>
      </Group>
    </Card>
  );
}

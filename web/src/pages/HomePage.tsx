// The clinic's start page: find a patient, or pick up one opened recently.
import { Button, Group, SimpleGrid, Skeleton, Stack, Text, Title } from '@mantine/core';
import { IconUserPlus } from '@tabler/icons-react';
import { useQueries } from '@tanstack/react-query';
import { Link } from 'react-router';
import { api } from '../api';
import { PatientCard } from '../components/PatientCard';
import { PatientSearch } from '../components/PatientSearch';
import { recentPatientIds } from '../recent';
import { useUser } from '../session';
import type { Patient } from '../types';

export function HomePage() {
  const user = useUser();
  const ids = recentPatientIds(user.id);
  const recent = useQueries({
    queries: ids.map((id) => ({
      queryKey: ['patient', id],
      queryFn: () => api<Patient>('GET', `/patients/${id}`),
    })),
  });

  return (
    <Stack gap="lg" maw={960}>
      <Group justify="space-between">
        <Title order={1} size="h2">
          Patients
        </Title>
        {user.role !== 'auditor' && (
          <Button component={Link} to="/patients/new" leftSection={<IconUserPlus size={18} />}>
            Register patient
          </Button>
        )}
      </Group>
      <PatientSearch autoFocus />
      <section aria-labelledby="recent-heading">
        <Title order={2} size="h4" id="recent-heading" mb="sm">
          Recent patients
        </Title>
        {ids.length === 0 ? (
          <Text c="dimmed">
            Patients you open appear here. Search above by name, owner, microchip or MRN.
          </Text>
        ) : (
          <SimpleGrid cols={{ base: 1, sm: 2, lg: 3 }}>
            {recent.map((q, i) =>
              q.data ? (
                <PatientCard key={q.data.id} patient={q.data} />
              ) : q.isLoading ? (
                <Skeleton key={ids[i]} h={78} />
              ) : null,
            )}
          </SimpleGrid>
        )}
      </section>
    </Stack>
  );
}

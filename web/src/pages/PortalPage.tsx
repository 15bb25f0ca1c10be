// The start page for people outside the clinic: owners see their animals, trainers, walkers,
// carers and referral vets the animals shared with them. Each opens the same chart, showing
// only what was released or shared with them.
import { SimpleGrid, Stack, Text, Title } from '@mantine/core';
import { LoadMore, usePagedList } from '../paged';
import { ErrorAlert } from '../components/ErrorAlert';
import { PatientCard } from '../components/PatientCard';
import type { Patient } from '../types';

export function PortalPage() {
  const patients = usePagedList<Patient>(['my-patients'], '/me/patients', { limit: 50 });
  const items = patients.items;
  const owns = items.some((p) => p.access.role === 'owner');
  const others = items.some((p) => p.access.role !== 'owner');

  return (
    <Stack maw={960}>
      <Title order={1} size="h2">
        {owns && !others ? 'My animals' : 'Animals shared with me'}
      </Title>
      <ErrorAlert error={patients.error} />
      {patients.data && items.length === 0 && (
        <Text c="dimmed">
          Nothing is shared with you at the moment. When a clinic shares an animal’s record with
          you, it appears here.
        </Text>
      )}
      <SimpleGrid cols={{ base: 1, sm: 2, lg: 3 }}>
        {items.map((p) => (
          <PatientCard key={p.id} patient={p} />
        ))}
      </SimpleGrid>
      <LoadMore list={patients} label="Show more" />
      {owns && (
        <Text size="sm" c="dimmed">
          Open an animal to see the notes and files the clinic released to you, add photos, see who
          accessed the record, and manage your consents to share it.
        </Text>
      )}
    </Stack>
  );
}

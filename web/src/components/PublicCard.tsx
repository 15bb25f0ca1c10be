// The frame of the pages shown before anyone is signed in: a titled card in the middle.
import type { ReactNode } from 'react';
import { Center, Paper, Title } from '@mantine/core';

export function PublicCard({ title, children }: { title: string; children: ReactNode }) {
  return (
    <Center mih="100vh" p="md" component="main">
      <Paper withBorder shadow="sm" p="xl" w="100%" maw={460}>
        <Title order={1} size="h2" mb="md">
          {title}
        </Title>
        {children}
      </Paper>
    </Center>
  );
}

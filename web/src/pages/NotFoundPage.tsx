// An address the app does not know.
import { Button, Stack, Text, Title } from '@mantine/core';
import { Link } from 'react-router';

export function NotFoundPage() {
  return (
    <Stack align="flex-start">
      <Title order={1} size="h2">
        Page not found
      </Title>
      <Text>This address is not a page of Caretrail. Go back to the start and try from there.</Text>
      <Button component={Link} to="/">
        Go to the start
      </Button>
    </Stack>
  );
}

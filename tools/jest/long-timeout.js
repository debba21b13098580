// Integration and end-to-end tests start real processes and talk to real servers.
jest.setTimeout(180_000);

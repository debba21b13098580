// Jest's node environment, plus one thing: once a test file has finished (its last afterAll hook
// included), the clean-ups the file's setup registered in `globalThis.__stackAfterFile` run, in
// order. An afterAll hook of the setup file would run before the file's own top-level ones, while
// its STACK processes still run.
const { TestEnvironment } = require('jest-environment-node');

class StackEnvironment extends TestEnvironment {
  async handleTestEvent(event) {
    if (event.name !== 'run_finish') return;
    for (const cleanUp of this.global.__stackAfterFile ?? []) await cleanUp();
  }
}

module.exports = StackEnvironment;

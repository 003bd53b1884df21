import { Command, CommanderError } from 'commander';
import { registerExplainCommand } from './explain-command.js';
import { registerLabCommands } from './lab-commands.js';
import { registerMeshCommands } from './mesh-commands.js';
import { registerMulticlusterCommands } from './multicluster-commands.js';
import { registerRoleCommands } from './role-commands.js';
import { registerWaypointCommands } from './waypoint-commands.js';

function fail(err: unknown): never {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`ambit: ${message}\n`);
  process.exit(err instanceof CommanderError ? err.exitCode : 1);
}

const program = new Command('ambit')
  .description('ambit: an ambient-style multi-cluster service mesh, and a lab of real Kubernetes clusters')
  .version('0.1.0')
  .showHelpAfterError();

registerLabCommands(program);
registerMeshCommands(program);
registerExplainCommand(program);
registerMulticlusterCommands(program);
registerWaypointCommands(program);
registerRoleCommands(program);

program.exitOverride();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError && (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help')) process.exit(0);
  fail(err);
}

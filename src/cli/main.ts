import { Command, CommanderError } from 'commander';
import { registerRoleCommands, ROLE_COMMANDS } from './role-commands.js';

function fail(err: unknown): never {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`ambit: ${message}\n`);
  process.exit(err instanceof CommanderError ? err.exitCode : 1);
}

const program = new Command('ambit')
  .description('ambit: an ambient-style multi-cluster service mesh, and a lab of real Kubernetes clusters')
  .version('0.1.0')
  .showHelpAfterError();

// A role (what a pod runs) needs none of the user commands: their modules stay unloaded (about 10 MiB of a proxy's RSS).
if (!ROLE_COMMANDS.has(process.argv[2] ?? '')) {
  const [lab, mesh, explain, multicluster, waypoint, image] = await Promise.all([
    import('./lab-commands.js'),
    import('./mesh-commands.js'),
    import('./explain-command.js'),
    import('./multicluster-commands.js'),
    import('./waypoint-commands.js'),
    import('./image-commands.js'),
  ]);
  lab.registerLabCommands(program);
  mesh.registerMeshCommands(program);
  explain.registerExplainCommand(program);
  multicluster.registerMulticlusterCommands(program);
  waypoint.registerWaypointCommands(program);
  image.registerImageCommands(program);
}
registerRoleCommands(program);

program.exitOverride();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError && (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help')) process.exit(0);
  fail(err);
}

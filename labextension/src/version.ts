/**
 * This front end's version, from its package.json. The kernel reports flowcell's
 * Python version in every state message; the Flow panel shows both when they differ.
 */
// eslint-disable-next-line @typescript-eslint/no-var-requires
export const VERSION: string = require('../package.json').version;

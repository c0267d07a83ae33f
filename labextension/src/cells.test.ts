import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import { badge, findStepCell, parseStepLine } from './cells';

test('parses step names, joins and decorators', () => {
  assert.deepEqual(parseStepLine('%%step start\nself.next(self.end)'), {
    name: 'start',
    join: false,
    decorators: []
  });
  assert.deepEqual(parseStepLine('%%step join(inputs) @retry(times=2) @card(type="default")\npass'), {
    name: 'join',
    join: true,
    decorators: ['@retry(times=2)', '@card(type="default")']
  });
});

test('ignores other cells', () => {
  assert.equal(parseStepLine('%%flow MyFlow\nimport os'), null);
  assert.equal(parseStepLine('x = 1\n%%step start'), null);
  assert.equal(parseStepLine('%%stepper x'), null);
  assert.equal(parseStepLine(''), null);
});

test('badges and finding a step cell', () => {
  assert.deepEqual(badge('train', 'completed'), { text: 'train · succeeded', cls: 'fc-status-completed', title: '' });
  assert.deepEqual(badge('train', undefined), { text: 'train · never run', cls: 'fc-status-never', title: '' });
  assert.equal(findStepCell(['%load_ext flowcell', '%%step start\npass', '%%step end\npass'], 'end'), 2);
  assert.equal(findStepCell(['%%step start\npass'], 'nope'), -1);
});

test('a succeeded step that is stale says so, and why, in its tooltip', () => {
  const stale = { run: '12', steps: { train: ['cell changed (+2 −1 lines)', 'upstream step `load` is stale'] } };
  assert.deepEqual(badge('train', 'completed', stale), {
    text: 'train · stale',
    cls: 'fc-status-stale',
    title: 'train is stale against run 12:\n• cell changed (+2 −1 lines)\n• upstream step `load` is stale'
  });
  // Running and failed steps show that first; a step with no reasons is not stale.
  assert.equal(badge('train', 'failed', stale).cls, 'fc-status-failed');
  assert.equal(badge('load', 'completed', stale).text, 'load · succeeded');
});

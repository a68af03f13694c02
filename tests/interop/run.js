'use strict';
/*
 * Interop scenarios: the unmodified npm client ali-ons against the real rmq-broker.
 * Each scenario starts build/bin/rmq-broker --standalone on free loopback ports with a
 * throwaway data dir, drives it with ali-ons producers and push consumers, asserts the
 * outcome, and stops the broker by PID (SIGTERM must exit 0).
 *
 * Usage: node tests/interop/run.js BUILDDIR
 * Prints one Criterion-style synthesis line that tests/run counts.
 */
const assert = require('assert');
const childProcess = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const builddir = path.resolve(process.argv[2] || 'build');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'rmq-interop-'));
// ali-ons keeps broadcasting offsets under $HOME: keep them in the scratch dir
process.env.HOME = scratch;
const { Producer, Consumer, Message } = require('ali-ons');

const httpclient = { request() { throw new Error('no HTTP: nameSrv is set'); } };
const sleep = ms => new Promise(r => setTimeout(r, ms));
let instanceSeq = 0;

/* ---- the broker ------------------------------------------------------------------------- */

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function canBind(port) {
  return new Promise(resolve => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/* A broker port whose HA port (port + 1, as in RocketMQ) is free too, and a NameServer
 * port that is neither. */
async function freePorts() {
  for (;;) {
    const broker = await freePort();
    const ns = await freePort();
    if (broker < 65535 && ns !== broker + 1 && await canBind(broker + 1)) return { broker, ns };
  }
}

async function brokerStart(dir, ports, extra = []) {
  const log = path.join(dir, 'broker.log');
  const args = [
    '--standalone', `--listenPort=${ports.broker}`, `--namesrvListenPort=${ports.ns}`,
    '--bindAddress=127.0.0.1', '--brokerIP1=127.0.0.1', `--storePathRootDir=${dir}/data`,
    '--mappedFileSizeCommitLog=67108864', ...extra,
  ];
  const fd = fs.openSync(log, 'a');
  const child = childProcess.spawn(path.join(builddir, 'bin', 'rmq-broker'), args,
    { stdio: [ 'ignore', 'ignore', fd ] });
  fs.closeSync(fd);
  const exited = new Promise(resolve => child.on('exit', (code, sig) => resolve(sig ? 128 : code)));
  const end = Date.now() + 10000;
  const mark = fs.statSync(log).size;
  while (!fs.readFileSync(log).slice(mark).toString().includes('broker: ready port=')) {
    if (Date.now() > end || child.exitCode !== null) {
      throw new Error(`broker did not start; see ${log}`);
    }
    await sleep(20);
  }
  return { child, exited, log, ports, dir, nameSrv: `127.0.0.1:${ports.ns}`,
    addr: `127.0.0.1:${ports.broker}` };
}

async function brokerUp(extra) {
  const dir = fs.mkdtempSync(path.join(scratch, 'broker-'));
  return brokerStart(dir, await freePorts(), extra);
}

async function brokerStop(b, signal = 'SIGTERM') {
  b.child.kill(signal);
  const code = await b.exited;
  if (signal === 'SIGTERM') {
    assert.strictEqual(code, 0, `broker exit status ${code}; see ${b.log}`);
  }
}

/* One remoting request over a raw socket with a JSON header (admin calls): the answer's
 * header (parsed) and body (text). */
function adminExchange(addr, code, extFields) {
  return new Promise((resolve, reject) => {
    const [ host, port ] = addr.split(':');
    const header = Buffer.from(JSON.stringify({ code, language: 'JAVA', version: 401, opaque: 1,
      flag: 0, extFields }));
    const frame = Buffer.alloc(8 + header.length);
    frame.writeInt32BE(4 + header.length, 0);
    frame.writeInt32BE(header.length, 4);
    header.copy(frame, 8);
    const sock = net.connect(Number(port), host, () => sock.write(frame));
    let buf = Buffer.alloc(0);
    sock.on('data', d => {
      buf = Buffer.concat([ buf, d ]);
      if (buf.length >= 4 && buf.length >= 4 + buf.readInt32BE(0)) {
        const hl = buf.readInt32BE(4) & 0xffffff;
        sock.end();
        resolve({ header: JSON.parse(buf.slice(8, 8 + hl).toString()),
          body: buf.slice(8 + hl, 4 + buf.readInt32BE(0)).toString() });
      }
    });
    sock.on('error', reject);
  });
}

async function adminRequest(addr, code, extFields) {
  return (await adminExchange(addr, code, extFields)).header;
}

/* ali-ons needs a topic's route before it sends (it does not fall back to TBW102). */
async function createTopic(b, topic, queues) {
  const r = await adminRequest(b.addr, 17, { topic, defaultTopic: 'TBW102', readQueueNums: queues,
    writeQueueNums: queues, perm: 6, topicFilterType: 'SINGLE_TAG', order: false });
  assert.strictEqual(r.code, 0, `create topic ${topic}: ${r.remark}`);
  // the route follows once the broker re-registered with its NameServer
  await sleep(300);
}

/* ---- clients -------------------------------------------------------------------------------- */

/* ali-ons's own warnings (expected ones too, e.g. "no consumer for this group" while a
 * restarted broker has not had the heartbeat yet): shown only when a scenario fails */
let clientLog = [];
const logger = {
  info() {}, debug() {},
  warn(...a) { clientLog.push(a.map(String).join(' ')); },
  error(...a) { clientLog.push(a.map(x => (x && x.message) || String(x)).join(' ')); },
};

function common(b, extra) {
  return Object.assign({ httpclient, logger, nameSrv: b.nameSrv, accessKeyId: 'k', accessKeySecret: 's',
    clientIP: '127.0.0.1', instanceName: `i${++instanceSeq}`, persistConsumerOffsetInterval: 1000,
    rebalanceInterval: 1000 }, extra);
}

let live = [];                      /* clients of the running scenario, closed after it */

async function producerUp(b, group) {
  const p = new Producer(common(b, { producerGroup: group }));
  p.on('error', e => { if (!p.closing) clientLog.push(`producer ${group}: ${e.message}`); });
  live.push(p);
  await p.ready();
  return p;
}

function consumerUp(b, group, topic, expr, onMsg, extra = {}) {
  const c = new Consumer(common(b, Object.assign({ consumerGroup: group,
    consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET' }, extra)));
  c.on('error', e => { if (!c.closing) clientLog.push(`consumer ${group}: ${e.message}`); });
  c.subscribe(topic, expr, async msg => onMsg(msg));
  live.push(c);
  return c;
}

async function consumerDown(c) {
  if (!c.closing) {
    c.closing = true;
    await c.close();
  }
}

async function closeAll() {
  for (const x of live) {
    if (!x.closing) {
      x.closing = true;
      await x.close().catch(() => {});
    }
  }
  live = [];
}

async function waitFor(cond, ms, what) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function sendAll(p, msgs) {
  const ids = [];
  for (const m of msgs) {
    const r = await p.send(m);
    assert.strictEqual(r.sendStatus, 'SEND_OK');
    ids.push(r.msgId);
  }
  return ids;
}

/* ---- scenarios ------------------------------------------------------------------------------ */

const scenarios = [];
const figures = [];
function scenario(name, fn) { scenarios.push({ name, fn }); }

scenario('s1_ten_thousand_messages_arrive_intact_with_the_msgIds_the_producer_got', async () => {
  const N = 10000;
  const b = await brokerUp();
  try {
    await createTopic(b, 'S1Topic', 8);
    const p = await producerUp(b, 'PG_S1');
    const big = Buffer.from('compressible '.repeat(500));        // > 4 KiB: zlib'd by ali-ons
    const binary = Buffer.from([ ...Array(256).keys() ]);
    const sent = new Map();
    let t0 = Date.now();
    for (let i = 0; i < N; i++) {
      const body = i === 0 ? big : i === 1 ? binary : Buffer.from(`s1-body-${i}`);
      const m = new Message('S1Topic', `T${i % 3}`, body);
      m.keys = [ `k${i}`, `x${i}` ];
      m.properties.seq = String(i);
      const r = await p.send(m);
      assert.strictEqual(r.sendStatus, 'SEND_OK');
      sent.set(r.msgId, { i, body });
    }
    const produceRate = N * 1000 / (Date.now() - t0);
    assert.strictEqual(sent.size, N, 'msgIds are unique');
    const seen = new Set();
    t0 = Date.now();
    const c = consumerUp(b, 'CG_S1', 'S1Topic', '*', msg => {
      const s = sent.get(msg.msgId);
      assert(s, `a message the producer never got an id for: ${msg.msgId}`);
      assert(!seen.has(msg.msgId), `delivered twice: ${msg.msgId}`);
      assert(Buffer.compare(Buffer.from(msg.body), s.body) === 0, `body of #${s.i} differs`);
      assert.strictEqual(msg.tags, `T${s.i % 3}`);
      assert.strictEqual(msg.keys, `k${s.i} x${s.i}`);
      assert.strictEqual(msg.properties.seq, String(s.i));
      seen.add(msg.msgId);
    });
    await waitFor(() => seen.size === N, 60000, `${N} messages (got ${seen.size})`);
    const consumeRate = N * 1000 / (Date.now() - t0);
    figures.push(`ali-ons producer ${produceRate.toFixed(0)} msgs/s (one send awaited at a time), ` +
      `push consumer ${consumeRate.toFixed(0)} msgs/s`);
  } finally {
    await closeAll();
    await brokerStop(b);
  }
});

scenario('s2_tag_filtering_happens_in_the_broker', async () => {
  const b = await brokerUp();
  try {
    await createTopic(b, 'S2Topic', 4);
    const p = await producerUp(b, 'PG_S2');
    const ids = await sendAll(p, Array.from({ length: 200 },
      (_, i) => new Message('S2Topic', i % 2 ? 'B' : 'A', `s2-${i}`)));
    const wantA = new Set(ids.filter((_, i) => i % 2 === 0));
    const got = new Set();
    let pulledOther = 0;
    const c = consumerUp(b, 'CG_S2', 'S2Topic', 'A', msg => {
      assert.strictEqual(msg.tags, 'A');
      got.add(msg.msgId);
    });
    // look below ali-ons's own filter: what the broker put in the pull responses
    await c.ready();
    const api = c._mqClient;
    const pull = api.pullMessage.bind(api);
    api.pullMessage = async (...args) => {
      const r = await pull(...args);
      for (const m of r.msgFoundList || []) if (m.tags !== 'A') pulledOther++;
      return r;
    };
    await waitFor(() => got.size === wantA.size, 30000, `100 tag-A messages (got ${got.size})`);
    for (const id of got) assert(wantA.has(id));
    assert.strictEqual(pulledOther, 0, `${pulledOther} other-tag records reached the client`);
  } finally {
    await closeAll();
    await brokerStop(b);
  }
});

scenario('s3_two_consumers_split_the_queues_and_one_takes_over_when_the_other_leaves', async () => {
  const b = await brokerUp();
  try {
    await createTopic(b, 'S3Topic', 8);
    const p = await producerUp(b, 'PG_S3');
    const by = [ new Set(), new Set() ];
    const all = new Set();
    const c = [ 0, 1 ].map(k => consumerUp(b, 'CG_S3', 'S3Topic', '*', msg => {
      by[k].add(msg.msgId);
      all.add(msg.msgId);
    }));
    await Promise.all(c.map(x => x.ready()));
    await sleep(2500);                  // both members rebalance (every 1 s here)
    const first = await sendAll(p, Array.from({ length: 400 }, (_, i) => new Message('S3Topic', 'T', `a${i}`)));
    await waitFor(() => first.every(id => all.has(id)), 30000, 'the first 400 messages');
    assert(by[0].size > 0 && by[1].size > 0, `queues not split: ${by[0].size} / ${by[1].size}`);
    await consumerDown(c[0]);
    await sleep(2500);                  // the survivor takes the queues over
    const second = await sendAll(p, Array.from({ length: 400 }, (_, i) => new Message('S3Topic', 'T', `b${i}`)));
    await waitFor(() => second.every(id => by[1].has(id)), 30000,
      `the survivor receiving all 400 later messages (${second.filter(id => by[1].has(id)).length})`);
  } finally {
    await closeAll();
    await brokerStop(b);
  }
});

scenario('s4_broadcasting_consumers_each_receive_every_message', async () => {
  const b = await brokerUp();
  try {
    await createTopic(b, 'S4Topic', 4);
    const p = await producerUp(b, 'PG_S4');
    const got = [ new Set(), new Set() ];
    const c = [ 0, 1 ].map(k => consumerUp(b, 'CG_S4', 'S4Topic', '*', msg => { got[k].add(msg.msgId); },
      { isBroadcast: true }));
    await Promise.all(c.map(x => x.ready()));
    await sleep(2000);
    const ids = await sendAll(p, Array.from({ length: 200 }, (_, i) => new Message('S4Topic', 'T', `s4-${i}`)));
    await waitFor(() => ids.every(id => got[0].has(id) && got[1].has(id)), 30000,
      `both consumers receiving all 200 (${got[0].size}, ${got[1].size})`);
  } finally {
    await closeAll();
    await brokerStop(b);
  }
});

scenario('s5_messages_with_one_sharding_key_arrive_in_send_order', async () => {
  const b = await brokerUp();
  try {
    await createTopic(b, 'S5Topic', 4);
    const p = await producerUp(b, 'PG_S5');
    // ali-ons 3.12 maps a sharding key to queue md5(key) % queues, but then treats queue
    // id 0 as "no sharding key" (`if (queueId && ...)`) and round-robins those messages:
    // only keys that land on queues 1..3 are ordered by the client itself
    const crypto = require('crypto');
    const keys = Array.from({ length: 40 }, (_, k) => `key${k}`)
      .filter(k => crypto.createHash('md5').update(k).digest().readUInt32BE() % 4 !== 0)
      .slice(0, 10);
    assert.strictEqual(keys.length, 10);
    const msgs = [];
    for (let s = 0; s < 50; s++) {
      for (const key of keys) {
        const m = new Message('S5Topic', 'T', `${key}:${s}`);
        m.shardingKey = key;
        msgs.push(m);
      }
    }
    await sendAll(p, msgs);
    const last = new Map();
    let n = 0;
    const c = consumerUp(b, 'CG_S5', 'S5Topic', '*', msg => {
      const [ key, seq ] = msg.body.toString().split(':');
      const s = Number(seq);
      if (process.env.RMQ_INTEROP_DEBUG) console.log(key, s, msg.queueId, msg.queueOffset);
      assert(s > (last.has(key) ? last.get(key) : -1), `${key}: ${s} after ${last.get(key)}`);
      last.set(key, s);
      n++;
    });
    await waitFor(() => n === 500, 30000, `500 ordered messages (got ${n})`);
    for (const key of keys) assert.strictEqual(last.get(key), 49);
  } finally {
    await closeAll();
    await brokerStop(b);
  }
});

scenario('s6_failed_messages_return_through_the_retry_topic_then_land_in_the_dlq', async () => {
  // every delay level 200 ms, so retries come back quickly (the default starts at 10 s)
  const b = await brokerUp([ `--messageDelayLevel=${Array(18).fill('200ms').join(' ')}` ]);
  try {
    await createTopic(b, 'S6Topic', 2);
    const p = await producerUp(b, 'PG_S6');
    const ids = await sendAll(p, Array.from({ length: 10 }, (_, i) => new Message('S6Topic', 'T', `s6-${i}`)));
    const seen = new Map();           // body -> delivery times and reconsumeTimes
    const c = consumerUp(b, 'CG_S6', 'S6Topic', '*', msg => {
      const body = msg.body.toString();
      const i = Number(body.split('-')[1]);
      const list = seen.get(body) || [];
      list.push({ at: Date.now(), reconsume: msg.reconsumeTimes });
      seen.set(body, list);
      if (i % 2 === 0) throw new Error(`handler fails ${body} on purpose`);
    }, { maxReconsumeTimes: 2 });
    const failing = [ 0, 2, 4, 6, 8 ].map(i => `s6-${i}`);
    await waitFor(() => failing.every(k => (seen.get(k) || []).length >= 3), 30000,
      'three deliveries of each failing message');
    for (const k of failing) {
      const list = seen.get(k);
      assert.deepStrictEqual(list.map(x => x.reconsume), [ 0, 1, 2 ], `${k}: ${JSON.stringify(list)}`);
      for (let j = 1; j < list.length; j++) {
        assert(list[j].at - list[j - 1].at >= 190, `${k} came back before its delay`);
      }
    }
    for (const i of [ 1, 3, 5, 7, 9 ]) assert.strictEqual(seen.get(`s6-${i}`).length, 1);
    // after maxReconsumeTimes each failing message is in %DLQ%CG_S6 (write-only: count it)
    let dlq = 0;
    const end = Date.now() + 10000;
    while (dlq !== 5 && Date.now() < end) {
      const r = await adminRequest(b.addr, 30, { topic: '%DLQ%CG_S6', queueId: 0 });
      dlq = r.code === 0 ? Number(r.extFields.offset) : -1;
      if (dlq !== 5) await sleep(100);
    }
    assert.strictEqual(dlq, 5, `messages in %DLQ%CG_S6: ${dlq}`);
    await sleep(800);
    for (const k of failing) assert.strictEqual(seen.get(k).length, 3, `${k} delivered again after the DLQ`);
    assert.strictEqual(ids.length, 10);
  } finally {
    await closeAll();
    await brokerStop(b);
  }
});

scenario('s7_a_restarted_consumer_resumes_from_its_committed_offset', async () => {
  const b = await brokerUp();
  try {
    await createTopic(b, 'S7Topic', 4);
    const p = await producerUp(b, 'PG_S7');
    const first = await sendAll(p, Array.from({ length: 300 }, (_, i) => new Message('S7Topic', 'T', `a${i}`)));
    const got1 = new Set();
    const c1 = consumerUp(b, 'CG_S7', 'S7Topic', '*', msg => { got1.add(msg.msgId); });
    await waitFor(() => first.every(id => got1.has(id)), 30000, 'the first 300');
    await sleep(1500);                  // one commit interval
    await consumerDown(c1);
    const second = await sendAll(p, Array.from({ length: 300 }, (_, i) => new Message('S7Topic', 'T', `b${i}`)));
    const got2 = new Set();
    let again = 0;
    const c2 = consumerUp(b, 'CG_S7', 'S7Topic', '*', msg => {
      if (got1.has(msg.msgId)) again++;
      got2.add(msg.msgId);
    });
    await waitFor(() => second.every(id => got2.has(id)), 30000, 'the later 300');
    await sleep(500);
    assert.strictEqual(again, 0, `${again} messages redelivered after a committed close`);
  } finally {
    await closeAll();
    await brokerStop(b);
  }
});

scenario('s8_broker_restart_under_load_loses_nothing_acknowledged', async () => {
  let b = await brokerUp();
  const ports = b.ports;
  const dir = b.dir;
  try {
    await createTopic(b, 'S8Topic', 4);
    const p = await producerUp(b, 'PG_S8');
    const acked = new Set();
    const got = new Set();
    let failures = 0;
    let stop = false;
    const c = consumerUp(b, 'CG_S8', 'S8Topic', '*', msg => { got.add(msg.msgId); });
    const producing = (async () => {
      for (let i = 0; !stop; i++) {
        try {
          const r = await p.send(new Message('S8Topic', 'T', `s8-${i}`));
          if (r.sendStatus === 'SEND_OK') acked.add(r.msgId);
        } catch (e) {
          failures++;
          await sleep(50);
        }
      }
    })();
    await waitFor(() => acked.size >= 300, 30000, '300 acknowledged sends');
    await brokerStop(b);                // SIGTERM while producing and consuming
    const before = acked.size;
    b = await brokerStart(dir, ports);
    await waitFor(() => acked.size >= before + 300, 60000,
      `sends resuming after the restart (${acked.size - before})`);
    stop = true;
    await producing;
    await waitFor(() => [ ...acked ].every(id => got.has(id)), 60000,
      `every acknowledged message consumed (${[ ...acked ].filter(id => !got.has(id)).length} missing)`);
    figures.push(`broker restart: ${acked.size} acknowledged, all consumed; ${failures} sends failed ` +
      'while it was down');
  } finally {
    await closeAll();
    await brokerStop(b);
  }
});

/* ---- replication: a NameServer, a SYNC_MASTER and its slave as separate processes ---------- */

async function spawnReady(bin, args, log, text) {
  const fd = fs.openSync(log, 'a');
  const child = childProcess.spawn(path.join(builddir, 'bin', bin), args,
    { stdio: [ 'ignore', 'ignore', fd ] });
  fs.closeSync(fd);
  const exited = new Promise(resolve => child.on('exit', (code, sig) => resolve(sig ? 128 : code)));
  const end = Date.now() + 10000;
  while (!fs.readFileSync(log).toString().includes(text)) {
    if (Date.now() > end || child.exitCode !== null) throw new Error(`${bin} did not start; see ${log}`);
    await sleep(20);
  }
  return { child, exited, log };
}

/* listenPort 0: any free port (and any free HA port), read back from the log */
async function haBroker(dir, nameSrv, role) {
  const b = await spawnReady('rmq-broker', [
    '--brokerName=s9', `--brokerRole=${role}`, `--brokerId=${role === 'SLAVE' ? 1 : 0}`,
    '--listenPort=0', '--bindAddress=127.0.0.1', '--brokerIP1=127.0.0.1',
    `--namesrvAddr=${nameSrv}`, '--registerBrokerInterval=1000', '--slaveMetadataSyncInterval=500',
    '--mappedFileSizeCommitLog=67108864', `--storePathRootDir=${dir}/data`,
  ], path.join(dir, 'broker.log'), 'broker: ready port=');
  const port = /broker: ready port=(\d+)/.exec(fs.readFileSync(b.log).toString())[1];
  return Object.assign(b, { dir, nameSrv, addr: `127.0.0.1:${port}` });
}

/* The body of one admin request (GET_BROKER_RUNTIME_INFO, GET_ALL_TOPIC_CONFIG) as text. */
async function adminBody(addr, code, extFields = {}) {
  return (await adminExchange(addr, code, extFields)).body;
}

async function waitForAsync(cond, ms, what) {
  const end = Date.now() + ms;
  while (!(await cond().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

scenario('s9_a_sync_master_answers_send_ok_with_its_slave_and_the_slave_serves_when_it_dies', async () => {
  const N = 500;
  const dir = fs.mkdtempSync(path.join(scratch, 'ha-'));
  const nsPort = await freePort();
  const nameSrv = `127.0.0.1:${nsPort}`;
  fs.mkdirSync(path.join(dir, 'm'));
  fs.mkdirSync(path.join(dir, 's'));
  const ns = await spawnReady('rmq-namesrv', [ `--listenPort=${nsPort}`, '--bindAddress=127.0.0.1',
    `--kvConfigPath=${dir}/kv.json` ], path.join(dir, 'ns.log'), 'namesrv: serving');
  const m = await haBroker(path.join(dir, 'm'), nameSrv, 'SYNC_MASTER');
  const sl = await haBroker(path.join(dir, 's'), nameSrv, 'SLAVE');
  const b = { nameSrv, addr: m.addr };
  try {
    await createTopic(b, 'S9Topic', 4);
    await waitForAsync(async () => (await adminBody(sl.addr, 21)).includes('S9Topic'), 20000,
      'the slave to copy the topic');
    await waitForAsync(async () => (await adminBody(m.addr, 28)).includes('"haConnections":"1"'),
      20000, 'the slave to connect');
    const p = await producerUp(b, 'PG_S9');
    const ids = await sendAll(p, Array.from({ length: N }, (_, i) => new Message('S9Topic', 'T', `s9-${i}`)));
    m.child.kill('SIGKILL');
    await m.exited;
    await waitForAsync(async () => !(await adminBody(nameSrv, 105, { topic: 'S9Topic' })).includes('"0":'),
      20000, 'the NameServer to drop the dead master');
    const got = new Set();
    consumerUp(b, 'CG_S9', 'S9Topic', '*', msg => { got.add(msg.msgId); });
    await waitFor(() => ids.every(id => got.has(id)), 60000,
      `every acknowledged message from the slave (${ids.filter(id => !got.has(id)).length} missing)`);
    figures.push(`SYNC_MASTER: ${N} SEND_OK, master killed, all ${N} consumed from the slave by ali-ons`);
  } finally {
    await closeAll();
    for (const x of [ m, sl, ns ]) {
      if (x.child.exitCode === null && x.child.signalCode === null) {
        x.child.kill('SIGTERM');
        assert.strictEqual(await x.exited, 0, `exit status; see ${x.log}`);
      }
    }
  }
});

/* ---- runner --------------------------------------------------------------------------------- */

process.on('uncaughtException', e => clientLog.push(`uncaught: ${e.stack || e}`));

(async () => {
  let passed = 0;
  let failed = 0;
  const only = process.env.RMQ_INTEROP_ONLY;
  for (const s of scenarios) {
    if (only && !s.name.startsWith(only)) continue;
    const t0 = Date.now();
    clientLog = [];
    console.log(`[RUN ] interop::${s.name}`);
    try {
      await Promise.race([ s.fn(), sleep(120000).then(() => { throw new Error('timed out after 120 s'); }) ]);
      passed++;
      console.log(`[PASS] interop::${s.name}: (${((Date.now() - t0) / 1000).toFixed(2)}s)`);
    } catch (e) {
      failed++;
      console.log(`[FAIL] interop::${s.name}: ${e.stack || e}`);
      for (const l of clientLog.slice(-40)) console.log(`[----]   ali-ons: ${l}`);
    }
  }
  for (const f of figures) console.log(`[----] ${f}`);
  console.log(`[====] Synthesis: Tested: ${passed + failed} | Passing: ${passed} | Failing: ${failed} | Crashing: 0`);
  fs.rmSync(scratch, { recursive: true, force: true });
  process.exit(failed ? 1 : 0);
})();

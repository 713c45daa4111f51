#!/usr/bin/env node
// The DynamoDB stand-in for dev and tests: dynalite (pinned in scripts/lib/dynalite/, installed by
// scripts/lib/common.sh ensure_dynalite) behind HTTPS with OUR certificate, so the enclave verifies
// TLS for its table's host name exactly as it would for AWS.
//
//   NODE_PATH=DIR/node_modules node dynalite-tls.js HOST PORT CERT KEY [DATA_DIR]
//
// HOST must be a loopback address; PORT 0 picks a free one. Without DATA_DIR the tables live in
// memory; with it, in LevelDB there (survives restarts: scripts/dev). Prints
// "listening on https://HOST:PORT" on stderr once it accepts connections.
//
// Two things AWS does that dynalite does not, done here before dynalite sees the request:
// - A `TableName` may be the table's full ARN (the enclave sends nothing else, so a table of the
//   same name in another account can never answer): `arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`
//   with this stand-in's region and account (VETTID_DYNAMO_REGION, default us-east-1;
//   VETTID_DYNAMO_ACCOUNT, default 000000000000, the account dynalite puts in TableArn) becomes
//   NAME; any other ARN is a ResourceNotFoundException, as AWS answers for a table it cannot find.
// - VETTID_DYNAMO_ACCESS_KEYS (comma-separated access key ids; unset = any): a request signed with
//   another key id is an UnrecognizedClientException, as AWS answers unknown credentials.
//   Signatures are not checked (dynalite checks none).
// VETTID_DYNAMO_ENSURE_TABLE=NAME: create table NAME with the trusted store's schema (`pk` S hash
// key, on demand) unless it exists, before the "listening" line (scripts/dev: a persisted table
// is kept as it is).
// VETTID_EXIT_WITH_PID: exit when that process is gone (a test process's one stand-in, which no
// destructor of a static can kill).
// VETTID_DYNAMO_CONTROL=FILE: the fault table's switch, read at every request (absent or empty:
// normal), so a test flips it by rewriting the file and nothing restarts:
//   `throttle`   every request is refused before it is applied, alternately with
//                ProvisionedThroughputExceededException and ThrottlingException (400), as DynamoDB
//                throttles;
//   `deny`       every request signed by an accepted key id is AccessDeniedException (400), as when
//                the principal's policy no longer allows the table (the key itself is still known);
//   `delay MS`   every request is held MS milliseconds, then applied and answered as usual (a slow
//                table: the request lands late, after the caller may have given up).
'use strict'
const fs = require('fs')
const https = require('https')
const { PassThrough } = require('stream')
const dynalite = require('dynalite')

const [host, port, cert, key, path] = process.argv.slice(2)
if (!host || !/^[0-9]+$/.test(port || '') || !cert || !key) {
  console.error('usage: dynalite-tls.js HOST PORT CERT KEY [DATA_DIR]')
  process.exit(64)
}
if (!/^127\.[0-9.]+$/.test(host) && host !== '::1') {
  console.error(`dynalite-tls.js: ${host} is not a loopback address`)
  process.exit(64)
}
const region = process.env.VETTID_DYNAMO_REGION || 'us-east-1'
const account = process.env.VETTID_DYNAMO_ACCOUNT || '000000000000'
const arnPrefix = `arn:aws:dynamodb:${region}:${account}:table/`
const keys = (process.env.VETTID_DYNAMO_ACCESS_KEYS || '').split(',').filter(Boolean)
const MAX_BODY = 16 * 1024 * 1024

const options = { createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 }
if (path) {
  fs.mkdirSync(path, { recursive: true })
  options.path = path
}
// dynalite's own HTTP server is never listened on: its request handler runs behind ours.
const inner = dynalite(options)
const handle = inner.listeners('request')[0]

function refuse (res, status, type, message) {
  const body = JSON.stringify({ __type: `com.amazonaws.dynamodb.v20120810#${type}`, message })
  res.statusCode = status
  res.setHeader('Content-Type', 'application/x-amz-json-1.0')
  res.setHeader('Content-Length', Buffer.byteLength(body))
  res.end(body)
}

const control = process.env.VETTID_DYNAMO_CONTROL || ''
let throttled = 0
// The switch's state now: [mode, number] (['', 0] when normal or unreadable).
function fault () {
  if (!control) return ['', 0]
  let text = ''
  try { text = fs.readFileSync(control, 'utf8').trim() } catch (_) { return ['', 0] }
  const [mode, n] = text.split(/\s+/)
  return [mode || '', Number(n) || 0]
}

function accessKeyId (req) {
  const m = /Credential=([^/,\s]+)\//.exec(req.headers.authorization || '')
  return m ? m[1] : null
}

const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
  const chunks = []
  let size = 0
  req.on('data', (c) => {
    size += c.length
    if (size <= MAX_BODY) chunks.push(c)
  })
  req.on('end', () => {
    if (size > MAX_BODY) return refuse(res, 413, 'ValidationException', 'request too large')
    if (keys.length > 0 && !keys.includes(accessKeyId(req))) {
      return refuse(res, 400, 'UnrecognizedClientException',
        'The security token included in the request is invalid.')
    }
    const [mode, n] = fault()
    if (mode === 'throttle') {
      throttled += 1
      return throttled % 2
        ? refuse(res, 400, 'ProvisionedThroughputExceededException',
          'The level of configured provisioned throughput for the table was exceeded.')
        : refuse(res, 400, 'ThrottlingException', 'Rate of requests exceeds the allowed throughput.')
    }
    if (mode === 'deny') {
      return refuse(res, 400, 'AccessDeniedException',
        `User: ${accessKeyId(req)} is not authorized to perform this action on the table`)
    }
    if (mode === 'delay' && n > 0) {
      return setTimeout(() => serve(req, res, chunks), n)
    }
    serve(req, res, chunks)
  })
})

// Hands the request (its table ARN made a name) to dynalite.
function serve (req, res, chunks) {
  let body = Buffer.concat(chunks)
  if (body.length > 0) {
    let parsed = null
    try { parsed = JSON.parse(body.toString()) } catch (_) { /* dynalite answers bad JSON */ }
    const table = parsed && parsed.TableName
    if (typeof table === 'string' && table.startsWith('arn:')) {
      if (!table.startsWith(arnPrefix)) {
        return refuse(res, 400, 'ResourceNotFoundException', 'Requested resource not found')
      }
      parsed.TableName = table.slice(arnPrefix.length)
      body = Buffer.from(JSON.stringify(parsed))
    }
  }
  const fake = new PassThrough()
  fake.headers = req.headers
  fake.method = req.method
  fake.url = req.url
  handle(fake, res)
  fake.end(body)
}
server.keepAliveTimeout = 30000
// One DynamoDB call to ourselves, over our own TLS (its name checked against our certificate).
function selfCall (target, payload) {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host,
      port: server.address().port,
      servername: process.env.VETTID_DYNAMO_HOST || 'dynamodb.vettid.test',
      ca: fs.readFileSync(cert),
      method: 'POST',
      path: '/',
      headers: {
        'Content-Type': 'application/x-amz-json-1.0',
        'X-Amz-Target': `DynamoDB_20120810.${target}`,
        'X-Amz-Date': new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+/, ''),
        Authorization: `AWS4-HMAC-SHA256 Credential=${keys[0] || 'dev'}/20260101/${region}/dynamodb/aws4_request, SignedHeaders=host, Signature=0`
      }
    }, (res) => {
      const out = []
      res.on('data', (c) => out.push(c))
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(Buffer.concat(out).toString() || '{}') }))
    })
    req.on('error', reject)
    req.end(JSON.stringify(payload))
  })
}

async function ensureTable (name) {
  const r = await selfCall('CreateTable', {
    TableName: name,
    AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
    BillingMode: 'PAY_PER_REQUEST'
  })
  if (r.status === 200) return 'created'
  if (String(r.body.__type || '').endsWith('ResourceInUseException')) return 'kept'
  throw new Error(`CreateTable ${name}: ${JSON.stringify(r.body)}`)
}

server.listen(Number(port), host, () => {
  const table = process.env.VETTID_DYNAMO_ENSURE_TABLE
  const ready = table ? ensureTable(table).then((how) => console.error(`table ${arnPrefix}${table} ${how}`)) : Promise.resolve()
  ready.then(() => {
    console.error(`listening on https://${host}:${server.address().port}`)
  }, (e) => {
    console.error(`dynalite-tls.js: ${e.message}`)
    process.exit(1)
  })
})
server.on('error', (e) => {
  console.error(`dynalite-tls.js: ${e.message}`)
  process.exit(1)
})
const watched = Number(process.env.VETTID_EXIT_WITH_PID || 0)
if (watched > 0) {
  setInterval(() => {
    try { process.kill(watched, 0) } catch (_) { process.exit(0) }
  }, 500).unref()
}
let stopping = false
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    if (stopping) return
    stopping = true
    server.close()
    server.closeAllConnections()
    // Closing dynalite's server closes its LevelDB store (the data is on disk before exit).
    inner.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 3000).unref()
  })
}

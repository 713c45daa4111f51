#!/usr/bin/env node
// Dev only: KMS `Encrypt` of stdin under KEY_ARN with the trusted store's encryption context for
// TABLE_ARN, as the operator seals the table's credentials (docs/OPERATIONS.md), against a local
// KMS at URL (plain HTTP on 127.0.0.1). Writes the ciphertext blob to stdout.
//   node kms-encrypt.js http://127.0.0.1:PORT KEY_ARN TABLE_ARN < credentials.json > credentials.kms
// scripts/dev points it at a short-lived `vettid-local-kms --ignore-recipient` over the dev key
// file: the vault key's own policy lets nobody Encrypt without attestation.
'use strict'
const http = require('http')

const [url, keyArn, tableArn] = process.argv.slice(2)
if (!url || !keyArn || !tableArn || !url.startsWith('http://127.0.0.1:')) {
  console.error('usage: kms-encrypt.js http://127.0.0.1:PORT KEY_ARN TABLE_ARN < plaintext > blob')
  process.exit(64)
}
const chunks = []
process.stdin.on('data', (c) => chunks.push(c))
process.stdin.on('end', () => {
  const body = JSON.stringify({
    KeyId: keyArn,
    Plaintext: Buffer.concat(chunks).toString('base64'),
    EncryptionContext: { 'vettid:purpose': 'trusted-store-credentials', 'vettid:table': tableArn }
  })
  const req = http.request(url, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-amz-json-1.1',
      'X-Amz-Target': 'TrentService.Encrypt',
      Authorization: 'AWS4-HMAC-SHA256 Credential=dev/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0'
    }
  }, (res) => {
    const out = []
    res.on('data', (c) => out.push(c))
    res.on('end', () => {
      const text = Buffer.concat(out).toString()
      if (res.statusCode !== 200) {
        console.error(`Encrypt failed (${res.statusCode}): ${text}`)
        process.exit(1)
      }
      process.stdout.write(Buffer.from(JSON.parse(text).CiphertextBlob, 'base64'))
    })
  })
  req.on('error', (e) => { console.error(`Encrypt failed: ${e.message}`); process.exit(1) })
  req.end(body)
})

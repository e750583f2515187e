// The anchor for bench/ws_fanout.sh: a plain broadcast server on the `ws` package (Debian's
// node-ws). It listens on 127.0.0.1:PORT, spawns `sh -c CMD` (the same child command the
// slipwayd build runs), and sends every stdout line to every open client as one text message.
// When the child exits it closes each client (1000) once its buffered messages are out, and
// exits itself when they are gone, printing its CPU time.
//
//   node bench/ws_fanout_node.js PORT CMD
'use strict';

const { spawn } = require('child_process');
const http = require('http');
const path = require('path');

let WebSocketServer;
try {
    ({ WebSocketServer } = require('ws'));
} catch (e) {
    ({ WebSocketServer } = require(path.join('/usr/share/nodejs', 'ws')));
}

const port = Number(process.argv[2]);
const cmd = process.argv[3];
if (!port || !cmd) {
    console.error('usage: ws_fanout_node.js PORT CMD');
    process.exit(2);
}

const server = http.createServer((req, res) => {
    res.writeHead(404);
    res.end();
});
const wss = new WebSocketServer({ server, perMessageDeflate: false, clientTracking: true });
wss.on('connection', (ws) => ws.on('error', () => {}));

function broadcast(line) {
    for (const client of wss.clients) {
        if (client.readyState === 1)
            client.send(line);
    }
}

// Its own CPU (user + system), for the bench, which may find the process gone.
process.on('exit', () => {
    const u = process.cpuUsage();
    console.log(JSON.stringify({ event: 'exit', cpu_us: u.user + u.system }));
});

server.listen(port, '127.0.0.1', () => {
    console.log(JSON.stringify({ event: 'listening', port }));
    const child = spawn('sh', ['-c', cmd], { stdio: ['ignore', 'pipe', 'inherit'] });
    let rest = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
        const parts = (rest + chunk).split('\n');
        rest = parts.pop();
        for (const line of parts)
            broadcast(line);
    });
    child.on('close', (code) => {
        if (rest)
            broadcast(rest);
        console.log(JSON.stringify({ event: 'child-exit', code }));
        for (const client of wss.clients)
            client.close(1000, 'end');
        wss.close();
        server.close();
        // Clients that never close their side would hold the process: bounded here.
        setTimeout(() => process.exit(0), 60000).unref();
    });
});

"""Thrift chat room clients for tests/thrift.rs, on the real client stack.

Each client is what the project's client builds (its `fast_server_client.Client`):
the Python code `thrift --gen py` generates from chatserver.thrift, over
python3-thrift's TSocket, TBufferedTransport and TBinaryProtocol. Requests
are built as its `chatclient.SimpleClient` builds them: JSON
{"uid", "ip", "data"}, and the text of a chat message wrapped in the line
"{ip}:{uid} == {time}  ->  {text}".

Usage: client.py <generated code dir> <host> <port>, then one JSON command
per line on standard input, one JSON answer per line on standard output:

  {"op": "connect", "as": "gus"}                          -> {"ok": true}
  {"op": "call", "as": "gus", "method": "login", "uid": "gus", "ip": "...",
   "data": {...}, "text": "hi" (optional: becomes data.msg)}
      -> {"result": "..."} | {"exception": {"type": 1, "message": "..."}}
         | {"transport_error": "...", "type": n}
  {"op": "poll", "as": "gus", "uid": "gus", "ip": "...", "data": {...},
   "delay": 0.5, "timeout": 10}
      -> the client's receive loop: `recv` every `delay` seconds until it
         returns a message ({"result": "...", "polls": n}) or the timeout
         passes ({"result": "", "polls": n})
  {"op": "close", "as": "gus"}                            -> {"ok": true}
"""

import datetime
import json
import sys
import time

sys.path.insert(0, sys.argv[1])

from thrift.Thrift import TApplicationException  # noqa: E402
from thrift.protocol.TBinaryProtocol import TBinaryProtocol  # noqa: E402
from thrift.transport.TSocket import TSocket  # noqa: E402
from thrift.transport.TTransport import TBufferedTransport, TTransportException  # noqa: E402

from chatserver import ChatServer  # noqa: E402

HOST, PORT = sys.argv[2], int(sys.argv[3])
# chatclient.SimpleClient.msg_fmt
MSG_FMT = "{}:{} == {}  ->  {}"

clients = {}


def request(cmd):
    data = dict(cmd.get("data", {}))
    if "text" in cmd:
        now = str(datetime.datetime.now())[:-4]
        data["msg"] = MSG_FMT.format(cmd["ip"], cmd["uid"], now, cmd["text"])
    return json.dumps({"uid": cmd["uid"], "ip": cmd["ip"], "data": data})


def run(cmd):
    op = cmd["op"]
    if op == "connect":
        transport = TBufferedTransport(TSocket(HOST, PORT))
        client = ChatServer.Client(TBinaryProtocol(transport))
        transport.open()
        clients[cmd["as"]] = (transport, client)
        return {"ok": True}
    if op == "close":
        transport, _ = clients.pop(cmd["as"])
        transport.close()
        return {"ok": True}
    _, client = clients[cmd["as"]]
    if op == "call":
        return {"result": getattr(client, cmd["method"])(request(cmd))}
    if op == "poll":
        deadline = time.monotonic() + cmd.get("timeout", 10)
        polls = 0
        while True:
            msg = client.recv(request(cmd))
            polls += 1
            if msg or time.monotonic() > deadline:
                return {"result": msg, "polls": polls}
            time.sleep(cmd.get("delay", 0.5))
    raise ValueError("unknown op " + op)


for line in sys.stdin:
    cmd = json.loads(line)
    try:
        out = run(cmd)
    except TApplicationException as e:
        out = {"exception": {"type": e.type, "message": e.message}}
    except TTransportException as e:
        out = {"transport_error": str(e), "type": e.type}
    except Exception as e:  # what the test should see, not a dead driver
        out = {"error": repr(e)}
    print(json.dumps(out, ensure_ascii=False), flush=True)

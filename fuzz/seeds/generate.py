"""Seed inputs for the fuzz targets: a correctly signed request per scheme, in the
targets' input formats (see fuzz_targets/*.rs). Run: python3 seeds/generate.py"""
import hmac, hashlib, base64, os, urllib.parse
HERE = os.path.dirname(os.path.abspath(__file__))
NOW=1700000000
out=os.path.join(HERE, 'verify')
def H(key, msg): return hmac.new(key, msg, hashlib.sha256)
def seed(name, sel, headers, body):
    data=bytes([sel, 0]) + b"\n".join(f"{k}: {v}".encode() for k,v in headers) + b"\n\n" + body
    open(os.path.join(out,name),'wb').write(data)
ts=str(NOW)
# 0 standard-webhooks
key=base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
body=b'{"type":"payment.created","n":1}'
sig=base64.b64encode(H(key, b"msg_1."+ts.encode()+b"."+body).digest()).decode()
seed("standard-webhooks", 0, [("webhook-id","msg_1"),("webhook-timestamp",ts),("webhook-signature","v1,"+sig)], body)
seed("svix", 0, [("svix-id","msg_1"),("svix-timestamp",ts),("svix-signature","v1,AAAA v1,"+sig)], body)
# 1 stripe
body=b'{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{}}}'
sig=H(b"s3cret", ts.encode()+b"."+body).hexdigest()
seed("stripe", 1, [("stripe-signature",f"t={ts},v1={sig},v0=00")], body)
# 2 github
body=b'{"action":"opened","n":2}'
sig=H(b"s3cret", body).hexdigest()
seed("github", 2, [("x-hub-signature-256","sha256="+sig),("x-github-delivery","72d3162e-cc78-11e3-81ab-4c9367dc0958"),("x-github-event","issues")], body)
body=b'payload=%7B%22action%22%3A%22created%22%7D'
sig=H(b"s3cret", body).hexdigest()
seed("github-form", 2, [("x-hub-signature-256","sha256="+sig),("x-github-delivery","d-2"),("x-github-event","star")], body)
# 3 slack
for n, body in [("slack-event", b'{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}'),
                ("slack-command", b'command=%2Fdeploy&text=prod'),
                ("slack-challenge", b'{"type":"url_verification","challenge":"abc"}'),
                ("slack-interactive", b'payload=%7B%22type%22%3A%22block_actions%22%7D')]:
    sig=H(b"s3cret", b"v0:"+ts.encode()+b":"+body).hexdigest()
    seed(n, 3, [("x-slack-request-timestamp",ts),("x-slack-signature","v0="+sig)], body)
# 4 shopify
body=b'{"id":1,"n":3}'
sig=base64.b64encode(H(b"s3cret", body).digest()).decode()
seed("shopify", 4, [("x-shopify-hmac-sha256",sig),("x-shopify-webhook-id","wh-1"),("x-shopify-topic","orders/create")], body)
# 5 hmac-sha256 default: x-signature hex over body
body=b'{"n":4}'
seed("hmac-default", 5, [("x-signature",H(b"s3cret", body).hexdigest())], body)
# 15 hmac2: x-sig v1=<b64> over {ts}.{id}.{body}, id x-id, type /type
body=b'{"type":"order.paid","n":5}'
sig=base64.b64encode(H(b"k", ts.encode()+b".id-1."+body).digest()).decode()
seed("hmac-template", 15, [("x-sig","v1="+sig),("x-ts",ts),("x-id","id-1")], body)
# 16 ed: v1a (not signable here without a library): a malformed-but-shaped one
seed("ed", 16, [("webhook-id","msg_p5jXN8AQM9LWM0D4loKWxJek"),("webhook-timestamp","1614265330"),("webhook-signature","v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==")], b'{"test": 2432232314}')
# 6 bearer (id /id, type x-kind), 7 basic
body=b'{"id":"g-1","status":"firing"}'
seed("bearer", 6, [("authorization","Bearer s3cret"),("x-kind","firing")], body)
seed("basic", 7, [("authorization","Basic "+base64.b64encode(b"user:pass").decode())], body)
# 8 cloudevents: binary, structured, batch; and the OPTIONS handshake's header
seed("ce-binary", 8, [("authorization","Bearer s3cret"),("ce-specversion","1.0"),("ce-id","1"),("ce-source","/s"),("ce-type","a.b"),("webhook-request-origin","example.com")], b'{"n":1}')
seed("ce-structured", 8, [("authorization","Bearer s3cret"),("content-type","application/cloudevents+json")], b'{"specversion":"1.0","id":"1","source":"/s","type":"a.b","data":{"n":1}}')
seed("ce-batch", 8, [("authorization","Bearer s3cret"),("content-type","application/cloudevents-batch+json")], b'[{"specversion":"1.0","id":"1","source":"/s","type":"a.b"},{"specversion":"1.0","id":"2","source":"/s","type":"a.c","data":[1,{"x":"],"}]}]')
# 9 twilio: the URL is public_url + "/" (the verify target checks the path "/")
body=b'MessageSid=SM1&SmsStatus=received&Body=hi+there'
params=sorted(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
signed=("https://hooks.example.com/"+"".join(k+v for k,v in params)).encode()
seed("twilio", 9, [("x-twilio-signature",base64.b64encode(hmac.new(b"s3cret", signed, hashlib.sha1).digest()).decode())], body)
# 10 discord: Ed25519 (RFC 8032 test 1 key) over timestamp + body
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
key=Ed25519PrivateKey.from_private_bytes(bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
for n, body in [("discord-ping", b'{"type":1,"id":"1"}'), ("discord-command", b'{"type":2,"id":"2","data":{"name":"x"}}')]:
    seed(n, 10, [("x-signature-ed25519",key.sign(ts.encode()+body).hex()),("x-signature-timestamp",ts)], body)
# 11 pagerduty
body=b'{"event":{"id":"E1","event_type":"incident.triggered"}}'
seed("pagerduty", 11, [("x-pagerduty-signature","v1=00,v1="+H(b"s3cret", body).hexdigest())], body)
# 12 linear
body=('{"type":"Issue","action":"create","webhookTimestamp":%d000}' % NOW).encode()
seed("linear", 12, [("linear-signature",H(b"s3cret", body).hexdigest()),("linear-delivery","d-1")], body)
# 13 a2a (token only)
seed("a2a", 13, [("x-a2a-notification-token","s3cret")], b'{"statusUpdate":{"taskId":"t","status":{"state":"TASK_STATE_WORKING","timestamp":"x"}}}')
# 14 mcp-events: Standard Webhooks + X-MCP-Subscription-Id
key=base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
for n, body in [("mcp-event", b'{"eventId":"e1","name":"a.b","data":{}}'), ("mcp-verification", b'{"type":"verification","challenge":"c"}')]:
    sig=base64.b64encode(H(key, b"msg_1."+ts.encode()+b"."+body).digest()).decode()
    seed(n, 14, [("webhook-id","msg_1"),("webhook-timestamp",ts),("webhook-signature","v1,"+sig),("x-mcp-subscription-id","sub_1")], body)
# signed target seeds: [sel, skew, id_len, type_len] + id + type + body
so=os.path.join(HERE, 'signed')
for sel in range(20):
    for n,(i,t,b) in enumerate([(b"evt_1", b"a.b", b'{"type":"x","n":1,"event":{"type":"y"}}'),
                                (b"", b"", b'command=%2Fx&text=y'),
                                (b"id", b"orders/create", b'{"order":{"total":1},"s":"aaa"}')]):
        open(os.path.join(so,f"s{sel}-{n}"),'wb').write(bytes([sel,0,len(i),len(t)])+i+t+b)

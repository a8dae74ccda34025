"""The senders' own Python libraries, driven by tests/e2e/standards.rs.

  twilio URL TOKEN FORM          -> the X-Twilio-Signature twilio's RequestValidator computes
  cloudevents                    -> JSON lines {mode, headers, body}: binary, structured and
                                    batch requests built with the CloudEvents SDK (cloudevents.v1.http)
  a2a-keys DIR                   -> writes DIR/agent.pem (ES256 key) and DIR/jwks.json (its public JWK)
  a2a-send URL TOKEN PEM AUD     -> pushes task updates with the A2A SDK's BasePushNotificationSender;
                                    prints JSON {config id: delivered?}
"""
import asyncio
import json
import sys
import time
import urllib.parse


def twilio(url, token, form):
    from twilio.request_validator import RequestValidator

    params = dict(urllib.parse.parse_qsl(form, keep_blank_values=True))
    validator = RequestValidator(token)
    signature = validator.compute_signature(url, params)
    # The library's own check of what it signed, before the host sees it.
    assert validator.validate(url, params, signature)
    print(signature)


def cloudevents():
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent

    def emit(mode, headers, body):
        if isinstance(body, bytes):
            body = body.decode()
        print(json.dumps({"mode": mode, "headers": dict(headers), "body": body}))

    order = CloudEvent(
        {"type": "com.example.order.paid", "source": "/shop/eu", "id": "order-1001"},
        {"order": 1001, "total": 4200},
    )
    emit("binary", *to_binary(order))
    refund = CloudEvent(
        {"type": "com.example.refund.created", "source": "/shop/us", "id": "refund-7",
         "subject": "refund 7"},
        {"refund": 7},
    )
    emit("structured", *to_structured(refund))
    entries = [
        CloudEvent({"type": "com.example.sensor.reading", "source": "/sensors/a", "id": "1"},
                   {"celsius": 21.5}),
        # The same id from another source is another event.
        CloudEvent({"type": "com.example.sensor.reading", "source": "/sensors/b", "id": "1"},
                   {"celsius": 19.0}),
        CloudEvent({"type": "com.example.sensor.alarm", "source": "/sensors/a", "id": "2"},
                   {"level": "high"}),
    ]
    bodies = [to_structured(e)[1].decode() for e in entries]
    emit("batch", {"content-type": "application/cloudevents-batch+json"},
         "[" + ", ".join(bodies) + "]")


def a2a_keys(directory):
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    public.update({"kid": "agent-key-1", "alg": "ES256", "use": "sig"})
    with open(f"{directory}/agent.pem", "wb") as f:
        f.write(pem)
    with open(f"{directory}/jwks.json", "w") as f:
        json.dump({"keys": [public]}, f)


def a2a_send(url, token, pem_path, audience):
    import httpx
    import jwt
    from google.protobuf.timestamp_pb2 import Timestamp
    from a2a.server.context import ServerCallContext
    from a2a.server.tasks import BasePushNotificationSender, InMemoryPushNotificationConfigStore
    from a2a.types import a2a_pb2 as t

    pem = open(pem_path, "rb").read()

    def token_for(aud, kid="agent-key-1"):
        now = int(time.time())
        return jwt.encode({"iat": now, "exp": now + 300, "aud": aud}, pem, algorithm="ES256",
                          headers={"kid": kid})

    configs = {
        # task id: (notification token, JWT)
        "task-good": (token, token_for(audience)),
        "task-wrong-aud": (token, token_for("https://elsewhere.example.com/hooks/a2a")),
        "task-wrong-kid": (token, token_for(audience, kid="unknown-key")),
        "task-wrong-token": ("not-the-token", token_for(audience)),
    }

    async def main():
        store = InMemoryPushNotificationConfigStore()
        context = ServerCallContext()
        for task_id, (notification_token, credentials) in configs.items():
            await store.set_info(task_id, t.TaskPushNotificationConfig(
                id=task_id, task_id=task_id, url=url, token=notification_token,
                authentication=t.AuthenticationInfo(scheme="Bearer", credentials=credentials),
            ), context)
        delivered = {}
        async with httpx.AsyncClient() as client:
            sender = BasePushNotificationSender(client, store)
            for task_id in configs:
                stamp = Timestamp()
                stamp.FromSeconds(1764867600)
                status = t.TaskStatusUpdateEvent(
                    task_id=task_id, context_id="ctx-1",
                    status=t.TaskStatus(state=t.TaskState.TASK_STATE_COMPLETED, timestamp=stamp),
                )
                ok = await sender._dispatch_notification(status, (await store.get_info_for_dispatch(task_id))[0], task_id)
                delivered[task_id] = ok
            artifact = t.TaskArtifactUpdateEvent(
                task_id="task-good", context_id="ctx-1",
                artifact=t.Artifact(artifact_id="report", name="report.md"),
            )
            await sender.send_notification("task-good", artifact)
        print(json.dumps(delivered))

    asyncio.run(main())


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"twilio": twilio, "cloudevents": cloudevents, "a2a-keys": a2a_keys,
     "a2a-send": a2a_send}[command](*args)

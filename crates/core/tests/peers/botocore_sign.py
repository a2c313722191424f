"""Signs requests with botocore's SigV4Auth at a fixed time, for comparison with Latchkey.

stdin: a JSON list of {method, url, headers, body, service, region, access_key_id,
secret_access_key, session_token?, timestamp (ISO 8601, UTC)}; stdout: a JSON list of the
Authorization header (and X-Amz-Security-Token) botocore computed for each.
"""
import datetime
import json
import sys
from unittest import mock

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

out = []
for case in json.load(sys.stdin):
    creds = Credentials(case["access_key_id"], case["secret_access_key"], case.get("session_token"))
    request = AWSRequest(method=case["method"], url=case["url"], data=case["body"].encode(),
                         headers=case["headers"])
    when = datetime.datetime.strptime(case["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(creds, case["service"], case["region"]).add_auth(request)
    out.append({"authorization": request.headers["Authorization"],
                "x-amz-date": request.headers["X-Amz-Date"],
                "x-amz-security-token": request.headers.get("X-Amz-Security-Token")})
json.dump(out, sys.stdout)

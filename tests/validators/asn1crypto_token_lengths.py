"""Asks a TSA for tokens with nonces of 1 to 64 bytes, with and without
the TSA certificate, and reports for each whether asn1crypto (the ASN.1
library under pyHanko) misreads one of its lengths as indefinite once the
token is embedded the way a signer embeds it: as the value of a
signature-time-stamp-token attribute. Such a token costs pyHanko 1-2 s of
re-encoding (wbond/asn1crypto#249).

usage: asn1crypto_token_lengths.py TSA_URL
prints one JSON list: [{"nonce_bytes", "cert_req", "misread", "signature_bytes"}]
"""
import hashlib
import json
import sys
import urllib.request

from asn1crypto import algos, cms, tsp


def token(url, nonce, cert_req):
    request = tsp.TimeStampReq({
        "version": 1,
        "message_imprint": {
            "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "hashed_message": hashlib.sha256(b"%d" % nonce).digest(),
        },
        "nonce": nonce,
        "cert_req": cert_req,
    })
    http = urllib.request.Request(
        url, data=request.dump(), headers={"Content-Type": "application/timestamp-query"}
    )
    with urllib.request.urlopen(http) as reply:
        response = tsp.TimeStampResp.load(reply.read())
    assert response["status"]["status"].native == "granted", response["status"].native
    return response["time_stamp_token"]


def misread(value):
    return value._header is not None and value._header[-1:] == b"\x80"


def main():
    url = sys.argv[1]
    report = []
    for nonce_bytes in range(1, 65):
        nonce = int.from_bytes(b"\x5a" * nonce_bytes, "big")
        for cert_req in (True, False):
            tst = token(url, nonce, cert_req)
            attribute = cms.CMSAttribute({"type": "signature_time_stamp_token", "values": [tst]})
            attribute.dump()
            signature = tst["content"]["signer_infos"][0]["signature"].contents
            report.append({
                "nonce_bytes": nonce_bytes,
                "cert_req": cert_req,
                "misread": misread(tst) or misread(attribute["values"]),
                "signature_bytes": len(signature),
            })
    print(json.dumps(report))


if __name__ == "__main__":
    main()

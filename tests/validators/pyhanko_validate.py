"""Validates every signature of a PDF with pyHanko (an independent PAdES
validator) and prints one JSON report per signature.

usage: pyhanko_validate.py FILE.pdf ROOT.pem [--ltv]

--ltv validates as PAdES B-LT(A): revocation checking is mandatory
(hard-fail) and its data must come from the document's DSS; nothing is
fetched.
"""
import json
import sys

from asn1crypto import pem, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import (
    DocumentSecurityStore,
    validate_pdf_signature,
    validate_pdf_timestamp,
)
from pyhanko_certvalidator import ValidationContext


def load_root(path):
    with open(path, "rb") as f:
        data = f.read()
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return x509.Certificate.load(data)


def main():
    path, root_path = sys.argv[1], sys.argv[2]
    ltv = "--ltv" in sys.argv
    root = load_root(root_path)
    reports = []
    with open(path, "rb") as f:
        reader = PdfFileReader(f)
        if ltv:
            dss = DocumentSecurityStore.read_dss(handler=reader)
            vc = dss.as_validation_context(
                {"trust_roots": [root], "allow_fetching": False, "revocation_mode": "hard-fail"}
            )
        else:
            vc = ValidationContext(trust_roots=[root], allow_fetching=False)
        for sig in reader.embedded_signatures:
            kind = sig.sig_object.get("/Type")
            report = {"field": sig.field_name, "type": str(kind)}
            try:
                if kind == "/DocTimeStamp":
                    status = validate_pdf_timestamp(sig, validation_context=vc)
                else:
                    status = validate_pdf_signature(sig, vc)
                report.update(
                    intact=status.intact,
                    valid=status.valid,
                    trusted=status.trusted,
                    coverage=str(getattr(status, "coverage", "")),
                    modification_level=str(getattr(status, "modification_level", "")),
                    docmdp_ok=getattr(status, "docmdp_ok", None),
                    timestamped=getattr(status, "timestamp_validity", None) is not None,
                    timestamp_trusted=(
                        status.timestamp_validity.trusted
                        if getattr(status, "timestamp_validity", None) is not None
                        else None
                    ),
                    signer=status.signing_cert.subject.human_friendly
                    if getattr(status, "signing_cert", None) is not None
                    else None,
                    summary=status.summary(),
                )
            except Exception as e:  # the report says what failed
                report.update(error=f"{type(e).__name__}: {e}")
            reports.append(report)
    print(json.dumps(reports, ensure_ascii=False))


if __name__ == "__main__":
    main()

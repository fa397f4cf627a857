"""Certified compression bounds (Lotfi et al. 2022): subspace training, quantization, coding, certificates.

The pipeline (:func:`compression_bound`, ``genlab bound``) trains in a random subspace, fine-tunes to a learned
codebook, codes the result into a prefix-free message and writes a certificate that :func:`verify`
(``genlab verify``) re-checks from the certificate and message alone.
"""

from genlab.bounds.compression.certificate import DEFAULT_GRID, VerificationError, certify
from genlab.bounds.compression.record import Certificate, CertificateError, parse_certificate
from genlab.bounds.compression.coding import MessageError, decode_message, encode_message
from genlab.bounds.compression.pipeline import BoundConfig, compression_bound
from genlab.bounds.compression.quantize import Quantizer, init_codebook
from genlab.bounds.compression.subspace import Projection, ProjectionSpec, SubspaceModel
from genlab.bounds.compression.verify import read_certificate, verify

__all__ = ["BoundConfig", "DEFAULT_GRID", "compression_bound", "certify", "verify", "read_certificate", "VerificationError",
           "Certificate", "CertificateError", "parse_certificate",
           "MessageError", "encode_message", "decode_message", "Quantizer", "init_codebook", "Projection",
           "ProjectionSpec", "SubspaceModel"]

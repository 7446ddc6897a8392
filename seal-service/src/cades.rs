//! Detached CAdES signatures (CMS SignedData without the content) of any
//! file, hashed as it streams so that memory does not grow with its size.

use std::io::Read;
use std::path::Path;

use kexin_ca::cms::DigestAlgorithm;

use crate::signer::{SealSigner, SignOptions};
use crate::Error;

/// The digest of everything `reader` yields.
pub fn digest_reader(algorithm: DigestAlgorithm, mut reader: impl Read) -> Result<Vec<u8>, Error> {
    Ok(algorithm.digest_reader(&mut reader)?)
}

/// A detached signature (DER) of the file at `path`, and the file's digest.
pub async fn sign_file(
    signer: &SealSigner,
    path: &Path,
    opts: &SignOptions<'_>,
) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let algorithm = signer.digest_algorithm();
    let path = path.to_owned();
    let digest = tokio::task::spawn_blocking(move || {
        digest_reader(
            algorithm,
            std::io::BufReader::new(std::fs::File::open(path)?),
        )
    })
    .await
    .map_err(|e| Error::Encoding(format!("hashing task: {e}")))??;
    let signature = signer.sign_digest(&digest, opts).await?;
    Ok((signature, digest))
}

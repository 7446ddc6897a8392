//! The registration authority's part of issuance: it decides what may be
//! issued (CSR proof of possession, profile rules, which CA) and hands the
//! decision to the [`Issuer`], which only signs.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use x509_cert::Certificate;

use crate::csr::parse_and_verify;
use crate::hierarchy::load_authority;
use crate::issuance::{Issuer, Requester, Signer, SigningAuthority};
use crate::profile::{Profiles, RepositoryUrls, SubjectRequest};
use crate::storage::Database;
use crate::Error;

#[derive(Clone, Debug)]
pub struct Registration {
    db: Database,
    issuer: Issuer,
    profiles: Profiles,
    urls: RepositoryUrls,
    authorities: AuthorityCache,
}

/// The CAs a process has loaded, shared by its [`Registration`]s (to issue
/// under) and its seal service (for the chains of what seals sign). A CA's
/// certificate changes only when it is renewed (`kexin ca renew`);
/// whoever takes the renewal up calls [`AuthorityCache::forget`], or what
/// is issued would be cut short to the end of the certificate cached, and
/// chains would carry it.
#[derive(Clone, Debug, Default)]
pub struct AuthorityCache(Arc<RwLock<CachedAuthorities>>);

#[derive(Debug, Default)]
struct CachedAuthorities {
    by_name: HashMap<String, Arc<SigningAuthority>>,
    /// Every CA's certificate.
    certificates: Option<Arc<Vec<Certificate>>>,
    /// How many times the cache was forgotten: a CA read before the last
    /// forgetting may be the certificate replaced, and is used once, not
    /// kept.
    generation: u64,
}

impl AuthorityCache {
    /// Loads the CAs again when next asked for.
    pub fn forget(&self) {
        let mut cached = self.0.write().unwrap_or_else(|p| p.into_inner());
        cached.by_name.clear();
        cached.certificates = None;
        cached.generation += 1;
    }

    /// Every CA's certificate, as stored.
    pub async fn certificates(&self, db: &Database) -> Result<Arc<Vec<Certificate>>, Error> {
        let generation = {
            let cached = self.0.read().unwrap_or_else(|p| p.into_inner());
            if let Some(certificates) = &cached.certificates {
                return Ok(certificates.clone());
            }
            cached.generation
        };
        let certificates = Arc::new(
            db.authorities()
                .await?
                .iter()
                .map(|a| {
                    <Certificate as der::Decode>::from_der(&a.certificate)
                        .map_err(crate::certificate::der_err)
                })
                .collect::<Result<Vec<_>, _>>()?,
        );
        let mut cached = self.0.write().unwrap_or_else(|p| p.into_inner());
        if cached.generation == generation {
            cached.certificates = Some(certificates.clone());
        }
        Ok(certificates)
    }

    async fn get(&self, db: &Database, name: &str) -> Result<Arc<SigningAuthority>, Error> {
        let generation = {
            let cached = self.0.read().unwrap_or_else(|p| p.into_inner());
            if let Some(authority) = cached.by_name.get(name) {
                return Ok(authority.clone());
            }
            cached.generation
        };
        let authority = Arc::new(load_authority(db, name).await?);
        let mut cached = self.0.write().unwrap_or_else(|p| p.into_inner());
        if cached.generation == generation {
            cached.by_name.insert(name.to_owned(), authority.clone());
        }
        Ok(authority)
    }
}

impl Registration {
    /// `authorities` is shared by the process's registrations, so that a
    /// CA renewal taken up is taken up by all.
    pub fn new(
        db: Database,
        issuer: Issuer,
        profiles: Profiles,
        urls: RepositoryUrls,
        authorities: AuthorityCache,
    ) -> Self {
        Self {
            db,
            issuer,
            profiles,
            urls,
            authorities,
        }
    }

    async fn authority(&self, name: &str) -> Result<Arc<SigningAuthority>, Error> {
        self.authorities.get(&self.db, name).await
    }

    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// Issues a certificate for a PKCS#10 CSR (DER or PEM) under `profile`,
    /// signed by `ca` or the profile's default CA.
    pub async fn issue_from_csr(
        &self,
        csr: &[u8],
        profile: &str,
        ca: Option<&str>,
        requester: Requester<'_>,
    ) -> Result<Certificate, Error> {
        let csr = parse_and_verify(csr)?;
        let request = SubjectRequest {
            subject: csr.subject,
            names: csr.requested_names,
            public_key: csr.public_key,
            key_algorithm: csr.key_algorithm,
        };
        self.issue(&request, profile, ca, requester).await
    }

    /// Checks `request` against `profile` and the CA as issuance would,
    /// without issuing: for requests that wait for approval.
    pub async fn check(
        &self,
        request: &SubjectRequest,
        profile: &str,
        ca: Option<&str>,
    ) -> Result<(), Error> {
        let profile = self.profiles.get(profile)?;
        let authority = self.authority(ca.unwrap_or(&profile.issuers[0])).await?;
        profile.template(request, &authority, &self.urls, SystemTime::now())?;
        Ok(())
    }

    /// Issues a certificate for a request whose key possession is already
    /// established (a key Kexin generated itself, or a verified CSR).
    pub async fn issue(
        &self,
        request: &SubjectRequest,
        profile: &str,
        ca: Option<&str>,
        requester: Requester<'_>,
    ) -> Result<Certificate, Error> {
        let profile = self.profiles.get(profile)?;
        let ca_name = ca.unwrap_or(&profile.issuers[0]);
        let authority = self.authority(ca_name).await?;
        let request = request.clone();
        let template = profile.template(&request, &authority, &self.urls, SystemTime::now())?;
        self.issuer
            .issue(
                Signer::Authority(&authority),
                &profile.name,
                &template,
                requester,
            )
            .await
    }
}

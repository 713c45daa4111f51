//! `eif-build describe`: what `nitro-cli describe-eif` prints, read with the reference crate.
//!
//! Output members and their order follow nitro-cli's `EifDescribeInfo`: `EifVersion`, `Measurements`,
//! `IsSigned`, `SigningCertificate` (signed only), `CheckCRC`, `SignatureCheck` (signed only), `ImageName`,
//! `ImageVersion`, `Metadata`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use aws_nitro_enclaves_image_format::defs::{EifHeader, EifSectionHeader, EIF_MAGIC};
use aws_nitro_enclaves_image_format::utils::eif_reader::{EifReader, SignCertificateInfo};
use serde::Serialize;
use serde_json::Value;

use crate::pcr::Measurements;

/// Largest image `describe` reads; the crate reads each section into memory.
pub const MAX_EIF_BYTES: u64 = 4 << 30;

/// The `describe` output.
#[derive(Serialize)]
pub struct Description {
    /// EIF format version from the header.
    #[serde(rename = "EifVersion")]
    pub version: u16,
    /// PCR0/1/2 (and PCR8 when signed).
    #[serde(rename = "Measurements")]
    pub measurements: Measurements,
    /// Whether the image has a signature section.
    #[serde(rename = "IsSigned")]
    pub is_signed: bool,
    /// The signing certificate, for a signed image.
    #[serde(rename = "SigningCertificate", skip_serializing_if = "Option::is_none")]
    pub cert_info: Option<SignCertificateInfo>,
    /// Whether the header CRC matches the contents.
    #[serde(rename = "CheckCRC")]
    pub crc_check: bool,
    /// Whether the signature covers this image's PCR0, for a signed image.
    #[serde(rename = "SignatureCheck", skip_serializing_if = "Option::is_none")]
    pub sign_check: Option<bool>,
    /// Metadata `ImageName`.
    #[serde(rename = "ImageName", skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// Metadata `ImageVersion`.
    #[serde(rename = "ImageVersion", skip_serializing_if = "Option::is_none")]
    pub image_version: Option<String>,
    /// Build metadata, with the custom metadata members flattened in.
    #[serde(rename = "Metadata", skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// Read and describe an image.
///
/// # Errors
/// If the file is not a well-formed EIF (checked before the crate reads it, so a corrupt size field cannot
/// make it allocate gigabytes), or a signed image's certificate cannot be read.
pub fn describe(path: &Path) -> Result<Description> {
    check_structure(path)?;
    let path_str = path
        .to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))?;
    let mut reader = EifReader::from_eif(path_str.to_owned())
        .map_err(|e| anyhow!("reading {}: {e}", path.display()))?;
    let map = reader
        .get_measurements()
        .map_err(|e| anyhow!("measuring {}: {e}", path.display()))?;
    let measurements = Measurements::from_crate(map.clone())?;
    let is_signed = reader.signature_section.is_some();
    let cert_info = if is_signed {
        Some(
            reader
                .get_certificate_info(map)
                .map_err(|e| anyhow!("reading the signing certificate: {e}"))?,
        )
    } else {
        None
    };
    let identity = reader.get_metadata();
    let metadata = identity.as_ref().map(|i| {
        let mut m = serde_json::Map::new();
        let b = &i.build_info;
        m.insert("BuildTime".into(), b.build_time.clone().into());
        m.insert("BuildTool".into(), b.build_tool.clone().into());
        m.insert(
            "BuildToolVersion".into(),
            b.build_tool_version.clone().into(),
        );
        m.insert("OperatingSystem".into(), b.img_os.clone().into());
        m.insert("KernelVersion".into(), b.img_kernel.clone().into());
        m.insert("DockerInfo".into(), i.docker_info.clone());
        if let Value::Object(custom) = &i.custom_info {
            m.extend(custom.clone());
        }
        Value::Object(m)
    });
    Ok(Description {
        version: reader.get_header().version,
        measurements,
        is_signed,
        cert_info,
        crc_check: reader.check_crc(),
        sign_check: reader.sign_check,
        image_name: identity.as_ref().map(|i| i.img_name.clone()),
        image_version: identity.as_ref().map(|i| i.img_version.clone()),
        metadata,
    })
}

/// Walk the header and section headers: magic, bounded sizes, sections that tile the file exactly.
fn check_structure(path: &Path) -> Result<()> {
    let mut f = File::open(path).with_context(|| format!("cannot open EIF {}", path.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("cannot stat EIF {}", path.display()))?
        .len();
    ensure!(
        len <= MAX_EIF_BYTES,
        "{} is {len} bytes, larger than the {MAX_EIF_BYTES}-byte limit",
        path.display()
    );
    let mut header = vec![0u8; EifHeader::size()];
    f.read_exact(&mut header)
        .with_context(|| format!("{} is too short for an EIF header", path.display()))?;
    let header = EifHeader::from_be_bytes(&header).map_err(|e| anyhow!("bad EIF header: {e}"))?;
    ensure!(
        header.magic == EIF_MAGIC,
        "{} is not an EIF (bad magic)",
        path.display()
    );
    let mut pos = EifHeader::size() as u64;
    let mut count = 0u16;
    let mut sh = vec![0u8; EifSectionHeader::size()];
    while pos < len {
        ensure!(
            len - pos >= sh.len() as u64,
            "truncated section header at offset {pos}"
        );
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut sh)?;
        let section =
            EifSectionHeader::from_be_bytes(&sh).map_err(|e| anyhow!("offset {pos}: {e}"))?;
        pos += sh.len() as u64;
        if section.section_size > len - pos {
            bail!(
                "section at offset {pos} claims {} bytes, past the end of the file",
                section.section_size
            );
        }
        pos += section.section_size;
        count += 1;
    }
    ensure!(
        count == header.num_sections,
        "header lists {} sections, file has {count}",
        header.num_sections
    );
    Ok(())
}

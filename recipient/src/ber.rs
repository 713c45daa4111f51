//! A strict, bounded BER reader: just enough ASN.1 to walk a CMS EnvelopedData.
//!
//! KMS sends BER, not DER: indefinite lengths closed by end-of-contents (EOC) markers, and the encrypted
//! content as a constructed string of OCTET STRING segments. A DER-only parser (`der` 0.7, so `cms` 0.2)
//! rejects that; normalising BER to DER first needs a guess about which constructed `[n]` is an implicitly
//! tagged OCTET STRING. This reader avoids the guess: it accepts both length forms and leaves every
//! interpretation to the schema walker in `cms.rs`, which knows what each element must be.
//!
//! Rules (each violation is `Malformed`, never a panic):
//! - the input is a slice; nothing is allocated here, and every length is checked against what remains
//!   before it is used;
//! - low-tag-number form only (CMS never needs tags ≥ 31), definite lengths of at most 4 length octets
//!   (non-minimal long forms are accepted, as BER allows; the value is still bounded by the input);
//! - indefinite length only on constructed elements, closed by exactly `00 00`; an EOC anywhere else is an
//!   error;
//! - nesting is bounded by [`crate::MAX_DEPTH`]; the only recursion is the scan for the end of an
//!   indefinite-length element, and it goes one level deeper per call.

use crate::error::RecipientError;
use crate::MAX_DEPTH;

fn malformed(what: &'static str) -> RecipientError {
    RecipientError::Malformed(what)
}

/// Identifier octets of the universal types and the context tags CMS uses.
pub(crate) mod tag {
    pub const INTEGER: u8 = 0x02;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// The constructed bit of an identifier octet.
    pub const CONSTRUCTED: u8 = 0x20;
    /// `[n]` context-specific, primitive.
    pub const fn context(n: u8) -> u8 {
        0x80 | n
    }
    /// `[n]` context-specific, constructed.
    pub const fn context_constructed(n: u8) -> u8 {
        0xA0 | n
    }
}

/// One element: its identifier octet and its contents (without the EOC of an indefinite length).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    /// The identifier octet (class, constructed bit, tag number).
    pub tag: u8,
    /// The contents octets.
    pub body: &'a [u8],
    depth: usize,
}

impl<'a> Tlv<'a> {
    /// Whether the element is constructed (its contents are elements).
    pub fn constructed(&self) -> bool {
        self.tag & tag::CONSTRUCTED != 0
    }

    /// The elements inside a constructed element.
    pub fn children(&self, what: &'static str) -> Result<Elements<'a>, RecipientError> {
        if !self.constructed() {
            return Err(malformed(what));
        }
        Ok(Elements {
            rest: self.body,
            depth: self.depth + 1,
        })
    }
}

/// A run of consecutive elements: the whole input, or the contents of a constructed element.
pub(crate) struct Elements<'a> {
    rest: &'a [u8],
    depth: usize,
}

impl<'a> Elements<'a> {
    /// The top-level elements of `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self {
            rest: input,
            depth: 0,
        }
    }

    /// The next element, or `None` at the end.
    pub fn next(&mut self) -> Result<Option<Tlv<'a>>, RecipientError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let (tlv, used) = read_one(self.rest, self.depth)?;
        self.rest = &self.rest[used..];
        Ok(Some(tlv))
    }

    /// The identifier octet of the next element, without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element, which must exist and carry `expected` as its identifier octet.
    pub fn expect(&mut self, expected: u8, what: &'static str) -> Result<Tlv<'a>, RecipientError> {
        match self.next()? {
            Some(tlv) if tlv.tag == expected => Ok(tlv),
            _ => Err(malformed(what)),
        }
    }

    /// Fails unless every element has been consumed (no trailing or unexpected fields).
    pub fn finish(&self, what: &'static str) -> Result<(), RecipientError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(malformed(what))
        }
    }
}

/// Reads one element at the start of `input`; returns it and the number of bytes it spans (EOC included).
fn read_one(input: &[u8], depth: usize) -> Result<(Tlv<'_>, usize), RecipientError> {
    if depth > MAX_DEPTH {
        return Err(malformed("nesting too deep"));
    }
    let (&id, after_id) = input.split_first().ok_or(malformed("truncated"))?;
    if id == 0 {
        return Err(malformed("unexpected end-of-contents marker"));
    }
    if id & 0x1f == 0x1f {
        return Err(malformed("high tag number form"));
    }
    let (&first, after_len) = after_id.split_first().ok_or(malformed("truncated"))?;
    let constructed = id & tag::CONSTRUCTED != 0;

    if first == 0x80 {
        if !constructed {
            return Err(malformed("indefinite length on a primitive element"));
        }
        // Scan the children until the EOC that closes this element.
        let start = 2;
        let mut pos = start;
        loop {
            let rest = &input[pos..];
            if rest.len() >= 2 && rest[0] == 0 && rest[1] == 0 {
                let tlv = Tlv {
                    tag: id,
                    body: &input[start..pos],
                    depth,
                };
                return Ok((tlv, pos + 2));
            }
            if rest.is_empty() {
                return Err(malformed("truncated (missing end-of-contents)"));
            }
            let (_, used) = read_one(rest, depth + 1)?;
            pos += used;
        }
    }

    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count > 4 {
            return Err(malformed("length field too long"));
        }
        let octets = after_len.get(..count).ok_or(malformed("truncated"))?;
        let len = octets
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, 2 + count)
    };
    let remaining = input.len() - header;
    if len > remaining {
        return Err(malformed("truncated"));
    }
    let tlv = Tlv {
        tag: id,
        body: &input[header..header + len],
        depth,
    };
    Ok((tlv, header + len))
}

#[cfg(test)]
mod tests;

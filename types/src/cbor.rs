//! minicbor `with` helpers for the foreign types inside stored journal values (the engine's
//! storage format 3, see `engine/src/storage.rs`). `Nat` and `Principal` use DFINITY's
//! `icrc-cbor` helpers, as `icrc-ledger-types` does for `Account`.
//!
//! The field indices below are part of the stored format: never renumber or reuse one; add new
//! fields with new indices as `Option`s (absent in older values, decoded as `None`).

use candid::{Nat, Principal};
use icrc_ledger_types::icrc1::account::{Account, Subaccount};
use icrc_ledger_types::icrc1::transfer::{Memo, TransferArg};
use icrc_ledger_types::icrc2::transfer_from::TransferFromArgs;
use minicbor::decode::{Decoder, Error};
use minicbor::encode::{self, Encoder, Write};
use minicbor::{Decode, Encode};

#[derive(Encode, Decode)]
struct TransferArgV {
    #[cbor(n(0), with = "minicbor::bytes")]
    from_subaccount: Option<Subaccount>,
    #[n(1)]
    to: Account,
    #[cbor(n(2), with = "icrc_cbor::nat::option")]
    fee: Option<Nat>,
    #[n(3)]
    created_at_time: Option<u64>,
    #[cbor(n(4), with = "minicbor::bytes")]
    memo: Option<Vec<u8>>,
    #[cbor(n(5), with = "icrc_cbor::nat")]
    amount: Nat,
}

#[derive(Encode, Decode)]
struct TransferFromArgsV {
    #[cbor(n(0), with = "minicbor::bytes")]
    spender_subaccount: Option<Subaccount>,
    #[n(1)]
    from: Account,
    #[n(2)]
    to: Account,
    #[cbor(n(3), with = "icrc_cbor::nat")]
    amount: Nat,
    #[cbor(n(4), with = "icrc_cbor::nat::option")]
    fee: Option<Nat>,
    #[cbor(n(5), with = "minicbor::bytes")]
    memo: Option<Vec<u8>>,
    #[n(6)]
    created_at_time: Option<u64>,
}

fn memo_bytes(m: &Option<Memo>) -> Option<Vec<u8>> {
    m.as_ref().map(|m| m.0.to_vec())
}

fn memo(b: Option<Vec<u8>>) -> Option<Memo> {
    b.map(Memo::from)
}

/// `icrc1_transfer`'s argument, as sent.
pub mod transfer_arg {
    use super::*;

    pub fn encode<Ctx, W: Write>(
        v: &TransferArg,
        e: &mut Encoder<W>,
        ctx: &mut Ctx,
    ) -> Result<(), encode::Error<W::Error>> {
        TransferArgV {
            from_subaccount: v.from_subaccount,
            to: v.to,
            fee: v.fee.clone(),
            created_at_time: v.created_at_time,
            memo: memo_bytes(&v.memo),
            amount: v.amount.clone(),
        }
        .encode(e, ctx)
    }

    pub fn decode<Ctx>(d: &mut Decoder<'_>, ctx: &mut Ctx) -> Result<TransferArg, Error> {
        let v = TransferArgV::decode(d, ctx)?;
        Ok(TransferArg {
            from_subaccount: v.from_subaccount,
            to: v.to,
            fee: v.fee,
            created_at_time: v.created_at_time,
            memo: memo(v.memo),
            amount: v.amount,
        })
    }
}

/// `icrc2_transfer_from`'s argument, as sent.
pub mod transfer_from_args {
    use super::*;

    pub fn encode<Ctx, W: Write>(
        v: &TransferFromArgs,
        e: &mut Encoder<W>,
        ctx: &mut Ctx,
    ) -> Result<(), encode::Error<W::Error>> {
        TransferFromArgsV {
            spender_subaccount: v.spender_subaccount,
            from: v.from,
            to: v.to,
            amount: v.amount.clone(),
            fee: v.fee.clone(),
            memo: memo_bytes(&v.memo),
            created_at_time: v.created_at_time,
        }
        .encode(e, ctx)
    }

    pub fn decode<Ctx>(d: &mut Decoder<'_>, ctx: &mut Ctx) -> Result<TransferFromArgs, Error> {
        let v = TransferFromArgsV::decode(d, ctx)?;
        Ok(TransferFromArgs {
            spender_subaccount: v.spender_subaccount,
            from: v.from,
            to: v.to,
            amount: v.amount,
            fee: v.fee,
            memo: memo(v.memo),
            created_at_time: v.created_at_time,
        })
    }
}

/// A list of principals (an array of byte strings).
pub mod principal_vec {
    use super::*;

    pub fn encode<Ctx, W: Write>(
        v: &[Principal],
        e: &mut Encoder<W>,
        _ctx: &mut Ctx,
    ) -> Result<(), encode::Error<W::Error>> {
        e.array(v.len() as u64)?;
        for p in v {
            e.bytes(p.as_slice())?;
        }
        Ok(())
    }

    pub fn decode<Ctx>(d: &mut Decoder<'_>, _ctx: &mut Ctx) -> Result<Vec<Principal>, Error> {
        let mut out = Vec::new();
        for p in d.array_iter::<&minicbor::bytes::ByteSlice>()? {
            out.push(Principal::try_from_slice(p?).map_err(|e| Error::message(e.to_string()))?);
        }
        Ok(out)
    }
}

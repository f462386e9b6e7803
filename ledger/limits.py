"""Every bound of the ledger's data model, named once.

The format specification (docs/FORMAT.md, section "Limits") lists these same values;
a structure outside them is malformed, or for amounts rejected with AMOUNT_OUT_OF_RANGE.
"""

# Encoding
MAX_ENCODED_BYTES = 8 * 1024 * 1024   # any single decoded structure (a block is the largest)
MAX_NESTING = 8                       # array depth of any canonical structure

# Identifiers and keys
CHAIN_ID_BYTES = 16
TX_ID_BYTES = 16                      # client-chosen, 128-bit
PARTY_ID_BYTES = 20                   # derived from a public key
PUBLIC_KEY_BYTES = 32                 # Ed25519
SIGNATURE_BYTES = 64                  # Ed25519
VOUCHER_NONCE_BYTES = 16
HASH_BYTES = 32                       # SHA-256

# Transactions
MAX_TX_BYTES = 4096
MAX_NAME_BYTES = 64                   # party names (centres, partners, nodes; never members)
MAX_ADDRESS_BYTES = 256               # node network address, host:port
MIN_ACTIVITY_REF_BYTES = 1            # a deposit always points somewhere in the centre's records
MAX_ACTIVITY_REF_BYTES = 64           # opaque code or hash pointing at a centre's own records
MAX_MEMO_BYTES = 140
MAX_REASON_BYTES = 140
MAX_APPROVALS = 32                    # governance co-signatures
MAX_GENESIS_PARTIES = 256             # per role in the genesis transaction

# Amounts
MAX_POINTS_PER_TX = 1_000_000         # one deposit, redemption or refund
MIN_VOUCHER_POINTS = 1                # a voucher's max_points: 1 .. MAX_VOUCHER_POINTS, else MALFORMED
MAX_VOUCHER_POINTS = MAX_POINTS_PER_TX   # no redemption may take more, so no voucher allows more
MAX_BUCKET_POINTS = 10**12            # a member's points from one centre; sums stay far below 2**64
MAX_VOLUNTEER_MINUTES = 100_000       # per deposit
MAX_DONATION_AMOUNT = 10**12          # per deposit, in the smallest currency unit (KRW)
SDG_GOALS = 17                        # deposit category: 0 = none, 1..17 = UN SDG goal

# Blocks
MAX_TXS_PER_BLOCK = 2048
MAX_BLOCK_BYTES = 6 * 1024 * 1024
MAX_TIME_MS = 2**53                   # block and voucher times, ms since the Unix epoch
# How far a batch's time may be from the clock of a node that accepts it (docs/FORMAT.md §7.2,
# "Block time"). Enforced by consensus, not checkable from the chain: a follower refuses a batch
# stamped more than this ahead of its clock, or (for the leader's own new batches) behind it.
MAX_BLOCK_TIME_SKEW_MS = 5_000

# Signed checkpoint notes (C2SP signed-note, docs/FORMAT.md §7.4)
MAX_NOTE_BYTES = 128 * 1024           # a whole note: 256 node signatures take ~38 KiB; room for cosignatures
MAX_NOTE_SIGNATURES = 2 * MAX_GENESIS_PARTIES   # signature lines, known keys or not (the spec asks >= 16)

from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReadOptions(_message.Message):
    __slots__ = ("min_height", "stale_ok")
    MIN_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    STALE_OK_FIELD_NUMBER: _ClassVar[int]
    min_height: int
    stale_ok: bool
    def __init__(self, min_height: _Optional[int] = ..., stale_ok: _Optional[bool] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("tx",)
    TX_FIELD_NUMBER: _ClassVar[int]
    tx: bytes
    def __init__(self, tx: _Optional[bytes] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("tx_id", "code", "code_name", "message", "height", "leaf_index", "duplicate")
    TX_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    CODE_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    LEAF_INDEX_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    tx_id: bytes
    code: int
    code_name: str
    message: str
    height: int
    leaf_index: int
    duplicate: bool
    def __init__(self, tx_id: _Optional[bytes] = ..., code: _Optional[int] = ..., code_name: _Optional[str] = ..., message: _Optional[str] = ..., height: _Optional[int] = ..., leaf_index: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class SubmitBatchRequest(_message.Message):
    __slots__ = ("txs",)
    TXS_FIELD_NUMBER: _ClassVar[int]
    txs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, txs: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SubmitBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SubmitResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[SubmitResponse, _Mapping]]] = ...) -> None: ...

class ReadGrant(_message.Message):
    __slots__ = ("member_key", "not_after_ms", "signature")
    MEMBER_KEY_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    member_key: bytes
    not_after_ms: int
    signature: bytes
    def __init__(self, member_key: _Optional[bytes] = ..., not_after_ms: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class GetTransactionRequest(_message.Message):
    __slots__ = ("tx_id", "read", "grant")
    TX_ID_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    tx_id: bytes
    read: ReadOptions
    grant: ReadGrant
    def __init__(self, tx_id: _Optional[bytes] = ..., read: _Optional[_Union[ReadOptions, _Mapping]] = ..., grant: _Optional[_Union[ReadGrant, _Mapping]] = ...) -> None: ...

class TransactionView(_message.Message):
    __slots__ = ("tx", "entry", "code", "code_name", "height", "index", "leaf_index", "tree_size", "tree_root", "inclusion_proof", "drawn")
    TX_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    CODE_NAME_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LEAF_INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TREE_ROOT_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_PROOF_FIELD_NUMBER: _ClassVar[int]
    DRAWN_FIELD_NUMBER: _ClassVar[int]
    tx: bytes
    entry: bytes
    code: int
    code_name: str
    height: int
    index: int
    leaf_index: int
    tree_size: int
    tree_root: bytes
    inclusion_proof: _containers.RepeatedScalarFieldContainer[bytes]
    drawn: _containers.RepeatedCompositeFieldContainer[CentreBalance]
    def __init__(self, tx: _Optional[bytes] = ..., entry: _Optional[bytes] = ..., code: _Optional[int] = ..., code_name: _Optional[str] = ..., height: _Optional[int] = ..., index: _Optional[int] = ..., leaf_index: _Optional[int] = ..., tree_size: _Optional[int] = ..., tree_root: _Optional[bytes] = ..., inclusion_proof: _Optional[_Iterable[bytes]] = ..., drawn: _Optional[_Iterable[_Union[CentreBalance, _Mapping]]] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("member_id", "read", "grant")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    member_id: bytes
    read: ReadOptions
    grant: ReadGrant
    def __init__(self, member_id: _Optional[bytes] = ..., read: _Optional[_Union[ReadOptions, _Mapping]] = ..., grant: _Optional[_Union[ReadGrant, _Mapping]] = ...) -> None: ...

class CentreBalance(_message.Message):
    __slots__ = ("centre_id", "points")
    CENTRE_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    centre_id: bytes
    points: int
    def __init__(self, centre_id: _Optional[bytes] = ..., points: _Optional[int] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("member_id", "registered", "points", "by_centre", "height")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BY_CENTRE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    member_id: bytes
    registered: bool
    points: int
    by_centre: _containers.RepeatedCompositeFieldContainer[CentreBalance]
    height: int
    def __init__(self, member_id: _Optional[bytes] = ..., registered: _Optional[bool] = ..., points: _Optional[int] = ..., by_centre: _Optional[_Iterable[_Union[CentreBalance, _Mapping]]] = ..., height: _Optional[int] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("party_id", "after_leaf", "limit", "read", "grant")
    PARTY_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_LEAF_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    party_id: bytes
    after_leaf: int
    limit: int
    read: ReadOptions
    grant: ReadGrant
    def __init__(self, party_id: _Optional[bytes] = ..., after_leaf: _Optional[int] = ..., limit: _Optional[int] = ..., read: _Optional[_Union[ReadOptions, _Mapping]] = ..., grant: _Optional[_Union[ReadGrant, _Mapping]] = ...) -> None: ...

class HistoryItem(_message.Message):
    __slots__ = ("leaf_index", "tx", "code", "height")
    LEAF_INDEX_FIELD_NUMBER: _ClassVar[int]
    TX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    leaf_index: int
    tx: bytes
    code: int
    height: int
    def __init__(self, leaf_index: _Optional[int] = ..., tx: _Optional[bytes] = ..., code: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class History(_message.Message):
    __slots__ = ("items", "more")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[HistoryItem]
    more: bool
    def __init__(self, items: _Optional[_Iterable[_Union[HistoryItem, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class StreamBlocksRequest(_message.Message):
    __slots__ = ("from_height", "max_blocks", "headers_only")
    FROM_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_ONLY_FIELD_NUMBER: _ClassVar[int]
    from_height: int
    max_blocks: int
    headers_only: bool
    def __init__(self, from_height: _Optional[int] = ..., max_blocks: _Optional[int] = ..., headers_only: _Optional[bool] = ...) -> None: ...

class CertifiedBlock(_message.Message):
    __slots__ = ("height", "block", "certificate", "header")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    height: int
    block: bytes
    certificate: bytes
    header: bytes
    def __init__(self, height: _Optional[int] = ..., block: _Optional[bytes] = ..., certificate: _Optional[bytes] = ..., header: _Optional[bytes] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("height", "tree_size", "tree_root", "block_hash", "certificate", "chain_id")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TREE_ROOT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_HASH_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    height: int
    tree_size: int
    tree_root: bytes
    block_hash: bytes
    certificate: bytes
    chain_id: bytes
    def __init__(self, height: _Optional[int] = ..., tree_size: _Optional[int] = ..., tree_root: _Optional[bytes] = ..., block_hash: _Optional[bytes] = ..., certificate: _Optional[bytes] = ..., chain_id: _Optional[bytes] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("size1", "size2")
    SIZE1_FIELD_NUMBER: _ClassVar[int]
    SIZE2_FIELD_NUMBER: _ClassVar[int]
    size1: int
    size2: int
    def __init__(self, size1: _Optional[int] = ..., size2: _Optional[int] = ...) -> None: ...

class ConsistencyProof(_message.Message):
    __slots__ = ("size1", "size2", "proof")
    SIZE1_FIELD_NUMBER: _ClassVar[int]
    SIZE2_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    size1: int
    size2: int
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, size1: _Optional[int] = ..., size2: _Optional[int] = ..., proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node_id", "name", "address", "role", "term", "applied_height", "certified_height", "lag_blocks", "storage_failure", "throttled_calls")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    APPLIED_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CERTIFIED_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    LAG_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FAILURE_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_CALLS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    address: str
    role: str
    term: int
    applied_height: int
    certified_height: int
    lag_blocks: int
    storage_failure: str
    throttled_calls: int
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., address: _Optional[str] = ..., role: _Optional[str] = ..., term: _Optional[int] = ..., applied_height: _Optional[int] = ..., certified_height: _Optional[int] = ..., lag_blocks: _Optional[int] = ..., storage_failure: _Optional[str] = ..., throttled_calls: _Optional[int] = ...) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("chain_id", "leader_id", "leader_address", "nodes", "this_node_id")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    THIS_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    chain_id: bytes
    leader_id: str
    leader_address: str
    nodes: _containers.RepeatedCompositeFieldContainer[NodeStatus]
    this_node_id: str
    def __init__(self, chain_id: _Optional[bytes] = ..., leader_id: _Optional[str] = ..., leader_address: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[NodeStatus, _Mapping]]] = ..., this_node_id: _Optional[str] = ...) -> None: ...

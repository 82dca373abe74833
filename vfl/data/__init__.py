"""The party data layer: one organization's table, validated, with a reusable schema."""
from vfl.data.readers import iter_id_chunks, read_frame
from vfl.data.scaling import Standardizer
from vfl.data.schema import Schema
from vfl.data.table import PartyTable, check_label_declarations, load_party_table, write_aligned

__all__ = ["PartyTable", "Schema", "Standardizer", "check_label_declarations", "iter_id_chunks",
           "load_party_table", "read_frame", "write_aligned"]

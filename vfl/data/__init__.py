"""The party data layer: one organization's table, validated, with a reusable schema.

    table = load_party_table("customers.csv", id_column="id", label="y", categorical=["color"])
    table.schema.save("schema.json")                       # vocabularies + label classes
    new = load_party_table("new.csv", schema=Schema.load("schema.json"))   # same columns at prediction
    aligned = table.take(rows_from_psi)
    scaler = Standardizer.fit(aligned.features[train_rows])
"""
from vfl.data.labels import decode_labels, encode_labels, sorted_classes
from vfl.data.readers import iter_id_chunks, read_frame
from vfl.data.scaling import Standardizer
from vfl.data.schema import Schema
from vfl.data.table import PartyTable, UnknownCategoryWarning, check_label_declarations, load_party_table
from vfl.data.writer import write_aligned

__all__ = ["PartyTable", "Schema", "Standardizer", "UnknownCategoryWarning", "check_label_declarations",
           "decode_labels", "encode_labels", "iter_id_chunks", "load_party_table", "read_frame",
           "sorted_classes", "write_aligned"]

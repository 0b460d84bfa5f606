"""Keras 3 export SavedModels: told apart from Keras 2 SavedModels, and a packed one (the FP32
port's form) unpacks only inside its own folder."""

from __future__ import annotations

import zipfile

import pytest

from edgeqat.errors import ModelError
from edgeqat.models.exported import PACKED, ExportedModel, is_export, is_packed


def test_a_savedmodel_without_keras_metadata_is_an_export(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"")
    assert is_export(tmp_path)
    (tmp_path / "keras_metadata.pb").write_bytes(b"")  # what tf-keras (Keras 2) adds: layers to rebuild
    assert not is_export(tmp_path)
    assert not is_export(tmp_path / "saved_model.pb") and not is_packed(tmp_path / "saved_model.pb")


def test_a_packed_member_outside_the_savedmodel_is_refused(tmp_path):
    bad = tmp_path / "fp32.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr(PACKED, "{}")
        zf.writestr("saved_model/../../escaped.txt", "x")
    assert is_packed(bad)
    with pytest.raises(ModelError, match=r"member 'saved_model/\.\./\.\./escaped\.txt' lies outside"):
        ExportedModel(bad)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()

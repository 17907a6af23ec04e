"""Label files as pandas, R and people write them (issue 13).

A file with more than two columns is refused with one line listing them
unless the cell-type column is chosen (``column=`` / ``--label-column``);
the headers pandas and R write are recognised as headers.
"""

import os

import pandas as pd
import pytest
from conftest import one_line_error, synthetic_counts, write_counts

from deepchem_actinn import cli
from deepchem_actinn.errors import InputError
from deepchem_actinn.io import read_labels

MAPPING = {"c1": "B cell", "c2": "T cell", "c3": "NA"}


@pytest.mark.parametrize("text", [
    "index\tbulk_labels\nc1\tB cell\nc2\tT cell\nc3\tNA\n",          # Series.to_csv, named index
    "\tbulk_labels\nc1\tB cell\nc2\tT cell\nc3\tNA\n",               # unnamed index
    '""\t"x"\n"c1"\t"B cell"\n"c2"\t"T cell"\n"c3"\t"NA"\n',         # R write.csv(sep="\t")
    '"x"\n"c1"\t"B cell"\n"c2"\t"T cell"\n"c3"\t"NA"\n',             # R write.table
    "cell_id\tcell_type\nc1\tB cell\nc2\tT cell\nc3\tNA\n",
    '"cell_id"\t"cell_type"\n"c1"\t"B cell"\n"c2"\t"T cell"\n"c3"\t"NA"\n',
])
def test_pandas_and_r_headers_are_headers(tmp_path, text):
    path = tmp_path / "labels.tsv"
    path.write_text(text)
    assert read_labels(path).to_dict() == MAPPING


def test_series_written_by_pandas_reads_back(tmp_path):
    series = pd.Series(MAPPING, name="bulk_labels")
    series.to_csv(tmp_path / "unnamed.tsv", sep="\t")
    series.rename_axis("index").to_csv(tmp_path / "named.tsv", sep="\t")
    assert read_labels(tmp_path / "unnamed.tsv").to_dict() == MAPPING
    assert read_labels(tmp_path / "named.tsv").to_dict() == MAPPING


def obs_table(tmp_path):
    """An obs table as pandas writes it: louvain numbers before the cell types."""
    obs = pd.DataFrame({"louvain": ["0", "1", "0"], "bulk_labels": list(MAPPING.values()),
                        "n_genes": [100, 200, 300]}, index=list(MAPPING))
    path = tmp_path / "obs.tsv"
    obs.to_csv(path, sep="\t")
    return path


def test_more_than_two_columns_needs_a_choice(tmp_path):
    path = obs_table(tmp_path)
    with pytest.raises(InputError) as info:
        read_labels(path)
    message = str(info.value)
    assert message.startswith(f"{path}: label file has 4 columns") and "\n" not in message
    for name in ("louvain", "bulk_labels", "n_genes", "--label-column"):
        assert name in message
    assert read_labels(path, column="bulk_labels").to_dict() == MAPPING
    assert read_labels(path, column=2).to_dict() == MAPPING
    assert read_labels(path, column="2").to_dict() == MAPPING
    assert read_labels(path, column="louvain").to_dict() == {"c1": "0", "c2": "1", "c3": "0"}
    with pytest.raises(InputError, match="no column 'cell_type' in its header"):
        read_labels(path, column="cell_type")
    with pytest.raises(InputError, match="column 0 holds the cell ids"):
        read_labels(path, column=0)
    with pytest.raises(InputError, match="no column 7"):
        read_labels(path, column=7)
    named = tmp_path / "named.tsv"
    table = pd.read_csv(path, sep="\t", index_col=0, keep_default_na=False)
    table.rename_axis("cell_id").to_csv(named, sep="\t")
    assert read_labels(named, column="bulk_labels").to_dict() == MAPPING
    with pytest.raises(InputError, match="column 'cell_id' holds the cell ids"):
        read_labels(named, column="cell_id")


def test_headerless_three_columns_and_short_rows(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("c1\t0\tB cell\nc2\t1\tT cell\n")
    with pytest.raises(InputError, match=r"3 columns \(0: e.g. 'c1', 1: e.g. '0', 2: e.g. "):
        read_labels(path)
    assert read_labels(path, column=2).to_dict() == {"c1": "B cell", "c2": "T cell"}
    with pytest.raises(InputError, match="it has no header line"):
        read_labels(path, column="bulk_labels")
    path.write_text("c1\t0\tB cell\nc2\t1\n")
    with pytest.raises(InputError, match="line 2 has 2 fields"):
        read_labels(path, column=2)
    # A trailing tab is no third column.
    path.write_text("c1\tB cell\t\nc2\tT cell\t\n")
    assert read_labels(path).to_dict() == {"c1": "B cell", "c2": "T cell"}


def test_unknown_keyword_is_a_type_error(tmp_path):
    path = obs_table(tmp_path)
    with pytest.raises(TypeError, match="colum"):
        read_labels(path, colum="bulk_labels")


def test_cli_train_and_evaluate_with_an_obs_table(tmp_path, capsys):
    counts, types = synthetic_counts(90, 120)
    cells = [f"cell{i}" for i in range(len(types))]
    path = write_counts(tmp_path / "counts.h5", counts)
    names = [f"type{t}" for t in types]
    obs = pd.DataFrame({"louvain": [str(t % 2) for t in types], "cell_type": names,
                        "n_counts": counts.sum(axis=1)}, index=cells)
    obs.to_csv(tmp_path / "obs.tsv", sep="\t")
    labels = tmp_path / "obs.tsv"
    model = tmp_path / "model"
    line = one_line_error(capsys, "train", "--train-set", path, "--train-labels", labels,
                          "--model-dir", model, "--epochs", "1", "--quiet")
    assert f"{labels}: label file has 4 columns" in line and "louvain" in line
    assert not model.exists()  # nothing written
    assert cli.main(["train", "--train-set", path, "--train-labels", os.fspath(labels),
                     "--label-column", "cell_type", "--model-dir", os.fspath(model),
                     "--epochs", "2", "--quiet"]) == 0
    saved = open(model / "actinn_model.json").read()
    assert "type2" in saved and "louvain" not in saved
    calls = tmp_path / "calls.tsv"
    assert cli.main(["predict", "--model-dir", os.fspath(model), "--test-set", path,
                     "--output", os.fspath(calls)]) == 0
    line = one_line_error(capsys, "evaluate", "--predictions", calls, "--labels", labels)
    assert "4 columns" in line
    capsys.readouterr()
    assert cli.main(["evaluate", "--predictions", os.fspath(calls), "--labels",
                     os.fspath(labels), "--label-column", "2"]) == 0
    assert "accuracy" in capsys.readouterr().out
    line = one_line_error(capsys, "evaluate", "--predictions", calls, "--labels", labels,
                          "--label-column", "celltype")
    assert "no column 'celltype'" in line

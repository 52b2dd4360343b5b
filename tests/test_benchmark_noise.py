"""python -m uvs_bringup.benchmark_noise: a small run writes the table, and the numbers
say what they should (the noisy tracker costs TJ success; Huber on noisy data learns a
Jacobian closer to the truth than MSE on the same data)."""

import json

from uvs_bringup.benchmark_noise import ROWS, main


def test_small_noise_benchmark(tmp_path, capsys):
    out = tmp_path / "noise"
    assert main(["--out", str(out), "--samples", "3000", "--epochs", "3", "--targets", "16",
                 "--seeds", "2", "--outliers", "0.1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == "uvs-benchmark-noise/1"
    assert results["noise"]["outlier_prob"] == 0.1
    rows = results["rows"]
    assert sorted(rows) == sorted(key for key, *_ in ROWS)
    for row in rows.values():
        for tracker in ("perfect", "noisy"):
            assert 0.0 <= row[tracker]["success"] <= 100.0
    # The noisy tracker jitters TJ's servo: fewer fine thresholds met.
    assert rows["tj"]["noisy"]["success"] < rows["tj"]["perfect"]["success"]
    frob = {k: rows[k]["training"]["jacobian_frobenius_mean"] for k in rows if k != "tj"}
    assert frob["nk_tanh/huber/noisy"] < 0.6 * frob["nk_tanh/mse/noisy"], frob
    assert rows["nk_tanh/huber/noisy"]["training"]["loss"] == "huber"
    report = (out / "report.md").read_text()
    assert "Tanh-NK (Huber)" in report and report == capsys.readouterr().out
    assert (out / "models" / "nk_tanh_huber_noisy" / "metadata.json").exists()

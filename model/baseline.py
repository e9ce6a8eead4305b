"""TF-IDF + logistic regression trained on the same rows as the model: the bar to beat.

Needs scikit-learn (the `train` extra).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from model import metrics
from model.data import SENTIMENT_LABELS, URGENCY_LABELS, Row, Splits


def baseline(splits: Splits, seed: int, high_recall: Mapping[str, float] | None = None) -> dict:
    """Per head, train on the rows that carry its label; score every held-out test set. For each set
    named in `high_recall` (the model's high-urgency recall there), also the baseline's high-urgency
    precision at that recall (its P(high) thresholded to match), beside its argmax figures."""
    out: dict = {}
    for head, labels in (("sentiment", SENTIMENT_LABELS), ("urgency", URGENCY_LABELS)):
        train = list({(r.text, getattr(r, head)) for r in splits.train if getattr(r, head) >= 0})
        train.sort()
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)
        x = vec.fit_transform([t for t, _ in train])
        clf = LogisticRegression(max_iter=2000, class_weight="balanced", C=2.0, random_state=seed)
        clf.fit(x, [y for _, y in train])
        for name, rows in splits.test.items():
            rows_h: list[Row] = [r for r in rows if getattr(r, head) >= 0]
            if not rows_h:
                continue
            x_test = vec.transform([r.text for r in rows_h])
            truth = np.array([getattr(r, head) for r in rows_h])
            m = metrics.summary(truth, clf.predict(x_test), labels)
            entry = {"macro_f1": m["macro_f1"], "macro_recall": m["macro_recall"]}
            if head == "urgency":
                entry.update(high_precision=m["per_class"]["high"]["precision"],
                             high_recall=m["per_class"]["high"]["recall"])
                if high_recall and name in high_recall:
                    high = labels.index("high")
                    p_high = clf.predict_proba(x_test)[:, list(clf.classes_).index(high)]
                    entry["high_precision_at_model_recall"] = metrics.precision_at_recall(
                        p_high, truth == high, high_recall[name])
            out[f"{name}/{head}"] = entry
    return out

"""TF-IDF + logistic regression trained on the same rows as the model: the bar to beat.

Needs scikit-learn (the `train` extra).
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from model import metrics
from model.data import SENTIMENT_LABELS, URGENCY_LABELS, Row, Splits


def baseline(splits: Splits, seed: int) -> dict:
    """Per head, train on the rows that carry its label; score every held-out test set."""
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
            pred = clf.predict(vec.transform([r.text for r in rows_h]))
            m = metrics.summary(np.array([getattr(r, head) for r in rows_h]), pred, labels)
            entry = {"macro_f1": m["macro_f1"], "macro_recall": m["macro_recall"]}
            if head == "urgency":
                entry.update(high_precision=m["per_class"]["high"]["precision"],
                             high_recall=m["per_class"]["high"]["recall"])
            out[f"{name}/{head}"] = entry
    return out

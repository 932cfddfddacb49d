"""BLEU and ROUGE-L on text in any script (cubecore.evaluation.scoring.text_scores)."""
from __future__ import annotations

import pytest

from cubecore.evaluation.scoring import UnicodeTokenizer, text_scores

# (reference, the same sentence with its last word changed, a disjoint sentence);
# 5 tokens each: 5 words in Russian, 6 characters in Chinese
RUSSIAN = ("мы идём в парк сегодня", "мы идём в парк завтра", "кошка спит дома весь день")
CHINESE = ("今天天气很好", "今天天气很差", "我们吃米饭吧")


@pytest.mark.parametrize("reference, partial, disjoint", [RUSSIAN, CHINESE], ids=["russian", "chinese"])
def test_identical_scores_one_and_disjoint_zero(reference, partial, disjoint):
    assert text_scores([reference], [reference]) == {"bleu": 1.0, "rouge_l": 1.0}
    assert text_scores([disjoint], [reference]) == {"bleu": 0.0, "rouge_l": 0.0}


def test_russian_partial_overlap_by_hand():
    # 5 words, the last differs: n-gram precisions 4/5, 3/4, 2/3, 1/2, equal lengths (no
    # brevity penalty): BLEU = (4/5 * 3/4 * 2/3 * 1/2) ** (1/4); LCS 4 of 5: ROUGE-L F1 = 0.8
    scores = text_scores([RUSSIAN[1]], [RUSSIAN[0]])
    assert scores["bleu"] == round((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, 4)
    assert scores["rouge_l"] == 0.8


def test_chinese_partial_overlap_by_hand():
    # 6 characters, the last differs: precisions 5/6, 4/5, 3/4, 2/3; LCS 5 of 6
    scores = text_scores([CHINESE[1]], [CHINESE[0]])
    assert scores["bleu"] == round((5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25, 4)
    assert scores["rouge_l"] == round(5 / 6, 4)


def test_tokens_per_script():
    tokenizer = UnicodeTokenizer()
    assert tokenizer.tokenize("Кошка сидит, на КОВРЕ!") == ["кошка", "сидит", "на", "ковре"]
    assert tokenizer.tokenize("今天天气。") == ["今", "天", "天", "气"]
    assert tokenizer.tokenize("日本語とEnglish mixed") == ["日", "本", "語", "と", "english", "mix"]
    # English as rouge_score's default: lowercased, punctuation dropped, Porter-stemmed
    assert tokenizer.tokenize("The cats were running, don't they?") == ["the", "cat", "were", "run", "don", "t",
                                                                       "they"]


def test_english_matches_rouge_score_default():
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    pairs = [("The cat sat on the mat.", "A cat was sitting on a mat!"),
             ("I like running in the park", "Running in parks is what I like")]
    for hypothesis, reference in pairs:
        expected = default.score(reference, hypothesis)["rougeL"].fmeasure
        assert text_scores([hypothesis], [reference])["rouge_l"] == round(expected, 4)

"""product_department and product_department_gen hooks for lm-eval; the logic is in harness.tasks.category."""
from harness.tasks.category import ClassifyHooks, macro_f1  # noqa: F401  (macro_f1: aggregation)

_mc = ClassifyHooks("product_department")
_gen = ClassifyHooks("product_department_gen")

load_dataset = _mc.load_dataset
doc_to_text = _mc.doc_to_text
doc_to_choice = _mc.doc_to_choice
doc_to_target = _mc.doc_to_target
process_mc = _mc.process_mc

gen_doc_to_text = _gen.doc_to_text
gen_doc_to_target = _gen.doc_to_label
process_gen = _gen.process_gen

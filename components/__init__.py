"""genfoundry components: pure logic (data, models, training, evaluation, audit, tracking).

Stage wiring lives in ``pipelines/``; nothing here reads ``params.yaml`` or prints.
"""

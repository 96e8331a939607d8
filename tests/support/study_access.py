"""An auth manager for the real-Airflow tests: Airflow's simple auth manager, except that the user ``outsider`` may
not read the study DAG (every simple-auth-manager role reads every DAG, so only such a manager can show a 403)."""

from __future__ import annotations

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

STUDY_DAG_ID = "dlc_training_study"


class StudyHiddenFromOutsider(SimpleAuthManager):
    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        if user.get_name() == "outsider" and details is not None and details.id == STUDY_DAG_ID:
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)

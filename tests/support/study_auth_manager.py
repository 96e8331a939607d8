"""An Airflow auth manager for the real-Airflow tests: Airflow's simple one, except that the user ``guest`` may
not see ``dlc_training_study`` (a lab member without access to this study). Configured with
``AIRFLOW__CORE__AUTH_MANAGER=study_auth_manager.StudyHiddenFromGuest``, this folder on PYTHONPATH."""

from __future__ import annotations

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


class StudyHiddenFromGuest(SimpleAuthManager):
    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        if user.get_name() == "guest" and details is not None and details.id == "dlc_training_study":
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
